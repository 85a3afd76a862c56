"""``torch.optim.lr_scheduler`` for :class:`optx.optim.Optimizer`.

Each scheduler keeps torch's protocol, written as torch writes it (construction performs a step,
``last_epoch``, ``base_lrs``, ``initial_lr`` in the groups, ``step()``, ``step(epoch)``,
``get_last_lr()``, ``state_dict()``), and takes its formulas and argument checks from
:mod:`optx.schedules` (and :mod:`optx.reduce_lr_on_plateau`), run on Python floats: values are
torch's bit for bit whatever ``jax_enable_x64`` is. Write a custom scheduler by subclassing
:class:`LRScheduler` and overriding ``get_lr()``, as in torch.
"""

from optx.optim.lr_scheduler.base import EPOCH_DEPRECATION_WARNING as EPOCH_DEPRECATION_WARNING
from optx.optim.lr_scheduler.base import LRScheduler
from optx.optim.lr_scheduler.base import _LRScheduler as _LRScheduler
from optx.optim.lr_scheduler.composite import ChainedScheduler, SequentialLR
from optx.optim.lr_scheduler.cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from optx.optim.lr_scheduler.cyclic import CyclicLR
from optx.optim.lr_scheduler.decay import (
    ConstantLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from optx.optim.lr_scheduler.one_cycle import OneCycleLR
from optx.optim.lr_scheduler.plateau import ReduceLROnPlateau
from optx.optim.lr_scheduler.user_defined import LambdaLR, MultiplicativeLR

__all__ = [
    "LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
    "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "SequentialLR",
    "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR", "CosineAnnealingWarmRestarts",
    "OneCycleLR",
]
