"""torch's lr schedulers as pure functions of the step count.

``schedule(t)`` is the lr that ``scheduler.get_last_lr()`` reports after ``t`` calls of
``scheduler.step()`` on an optimizer built with the given lr (``t = 0``: right after
construction). ``t`` may be a Python int or a traced integer array, so a schedule can be any
hyperparameter of any optx optimizer: ``optx.adam(lr=optx.schedules.cosine_annealing_lr(1e-3,
T_max=100))``. A Python-int ``t`` gives a Python float computed as torch computes it (whatever
``jax_enable_x64`` is); a traced ``t`` gives an array of the default float dtype. So inside a
jitted update without x64 a schedule runs in float32, a float32 rounding or so away from the
Python floats of torch and of the ``optx.optim.lr_scheduler`` classes (about 1e-8 for an lr of
0.1 over 100 steps of ``OneCycleLR`` or ``CosineAnnealingLR``); under x64 it agrees with torch to
about 1e-12.

Each module also holds the formulas and argument checks of its torch schedulers, written once
over an arithmetic ``m`` (:mod:`optx.schedules.torch_schedule`) and shared with the
``optx.optim.lr_scheduler`` classes.
"""

from optx.schedules.composite import chained_scheduler, sequential_lr
from optx.schedules.cosine import cosine_annealing_lr, cosine_annealing_warm_restarts
from optx.schedules.cyclic import cyclic_lr, cyclic_momentum
from optx.schedules.decay import (
    constant_lr,
    exponential_lr,
    linear_lr,
    multi_step_lr,
    polynomial_lr,
    step_lr,
)
from optx.schedules.one_cycle import one_cycle_lr, one_cycle_momentum
from optx.schedules.swa import swalr
from optx.schedules.torch_schedule import TorchSchedule
from optx.schedules.user_defined import lambda_lr, multiplicative_lr

__all__ = [
    "TorchSchedule",
    "chained_scheduler",
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "cyclic_lr",
    "cyclic_momentum",
    "exponential_lr",
    "lambda_lr",
    "linear_lr",
    "multi_step_lr",
    "multiplicative_lr",
    "one_cycle_lr",
    "one_cycle_momentum",
    "polynomial_lr",
    "sequential_lr",
    "step_lr",
    "swalr",
]
