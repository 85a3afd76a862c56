"""optx: every ``torch.optim`` optimizer and lr scheduler, numerically identical to PyTorch,
as pure JAX gradient transformations (optax's protocol), plus a ``torch.optim``-style adapter.
"""

from optx.hyperparams import Schedule, get_hyperparams, set_hyperparams
from optx.optimizers.adadelta import adadelta
from optx.optimizers.adagrad import adagrad
from optx.optimizers.adam import adam
from optx.optimizers.adamw import adamw
from optx.optimizers.nadam import nadam
from optx.optimizers.rmsprop import rmsprop
from optx.optimizers.rprop import rprop
from optx.optimizers.sgd import sgd
from optx.torch_optimizer import OptimizerState
from optx.transformation import (
    EmptyState,
    GradientTransformation,
    apply_updates,
    chain,
    identity,
)

__version__ = "0.1.0"

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "OptimizerState",
    "Schedule",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "apply_updates",
    "chain",
    "get_hyperparams",
    "identity",
    "nadam",
    "rmsprop",
    "rprop",
    "set_hyperparams",
    "sgd",
]
