"""optx: every ``torch.optim`` optimizer and lr scheduler, numerically identical to PyTorch,
as pure JAX gradient transformations (optax's protocol), plus a ``torch.optim``-style adapter.
"""

from optx import optim as optim  # `optx.optim.AdamW` right after `import optx`
from optx import quantized as quantized  # optx.quantized.QuantizedArray: low-bit state
from optx import schedules
from optx import sharding as sharding  # `optx.sharding.mean_across`, as LBFGS's docstring says
from optx.clipping import clip_by_total_norm, clip_grad_norm, clip_grad_value, total_norm
from optx.hyperparams import Schedule, get_hyperparams, set_hyperparams
from optx.optimizers.adadelta import adadelta
from optx.optimizers.adafactor import adafactor
from optx.optimizers.adagrad import adagrad
from optx.optimizers.adam import adam
from optx.optimizers.adamax import adamax
from optx.optimizers.adamw import adamw
from optx.optimizers.adamw_schedule_free import adamw_schedule_free
from optx.optimizers.asgd import asgd
from optx.optimizers.lbfgs import LbfgsState, lbfgs
from optx.optimizers.low_bit import (
    adam_4bit,
    adam_8bit,
    adam_fp8,
    adamw_4bit,
    adamw_8bit,
    adamw_fp8,
)
from optx.optimizers.muon import muon
from optx.optimizers.nadam import nadam
from optx.optimizers.radam import radam
from optx.optimizers.radam_schedule_free import radam_schedule_free
from optx.optimizers.rmsprop import rmsprop
from optx.optimizers.rprop import rprop
from optx.optimizers.sgd import sgd
from optx.optimizers.sgd_schedule_free import sgd_schedule_free
from optx.optimizers.sparse_adam import sparse_adam
from optx.reduce_lr_on_plateau import ReduceLROnPlateauState, reduce_lr_on_plateau
from optx.schedule_free import schedule_free_eval_params
from optx.state import OptimizerState
from optx.transformation import (
    EmptyState,
    GradientTransformation,
    apply_updates,
    chain,
    identity,
)
from optx.wrappers import accumulate_gradients, apply_if_finite

__version__ = "0.1.0"

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "OptimizerState",
    "ReduceLROnPlateauState",
    "Schedule",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_4bit",
    "adam_8bit",
    "adam_fp8",
    "adamax",
    "adamw",
    "adamw_4bit",
    "adamw_8bit",
    "adamw_fp8",
    "adamw_schedule_free",
    "accumulate_gradients",
    "apply_if_finite",
    "apply_updates",
    "asgd",
    "chain",
    "clip_by_total_norm",
    "clip_grad_norm",
    "clip_grad_value",
    "get_hyperparams",
    "identity",
    "lbfgs",
    "LbfgsState",
    "muon",
    "nadam",
    "quantized",
    "radam",
    "radam_schedule_free",
    "reduce_lr_on_plateau",
    "rmsprop",
    "rprop",
    "set_hyperparams",
    "schedules",
    "sgd",
    "sgd_schedule_free",
    "schedule_free_eval_params",
    "sparse_adam",
    "total_norm",
]
