"""``torch.optim`` for JAX: rename ``torch.optim`` to ``optx.optim`` and pass gradients.

Every class is a name plus an optx functional constructor; see :class:`Optimizer`.
"""

from __future__ import annotations

import inspect
from typing import Any

from optx.optim import lr_scheduler, swa_utils
from optx.optim.checkpoint import CheckpointError, load, save
from optx.optim.grad_utils import clip_grad_norm_, clip_grad_value_, get_total_norm
from optx.optim.optimizer import Optimizer
from optx.optim.schedule_free import _Closure as _ScheduleFreeClosure
from optx.optim.schedule_free import _TrainEval as _ScheduleFreeTrainEval
from optx.optim.schedule_free_wrapper import ScheduleFreeWrapper
from optx.optim.zero_redundancy import ZeroRedundancyOptimizer

# The constructors come from their modules, not from `optx`, whose __init__ imports this package.
from optx.optimizers.adadelta import adadelta as _adadelta
from optx.optimizers.adafactor import adafactor as _adafactor
from optx.optimizers.adagrad import adagrad as _adagrad
from optx.optimizers.adam import adam as _adam
from optx.optimizers.adamax import adamax as _adamax
from optx.optimizers.adamw import adamw as _adamw
from optx.optimizers.adamw_schedule_free import adamw_schedule_free as _adamw_schedule_free
from optx.optimizers.adamw_schedule_free import (
    adamw_schedule_free_closure as _adamw_schedule_free_closure,
)
from optx.optimizers.asgd import asgd as _asgd
from optx.optimizers.lbfgs import lbfgs as _lbfgs
from optx.optimizers.muon import muon as _muon
from optx.optimizers.nadam import nadam as _nadam
from optx.optimizers.radam import radam as _radam
from optx.optimizers.radam_schedule_free import radam_schedule_free as _radam_schedule_free
from optx.optimizers.radam_schedule_free import (
    radam_schedule_free_closure as _radam_schedule_free_closure,
)
from optx.optimizers.rmsprop import rmsprop as _rmsprop
from optx.optimizers.rprop import rprop as _rprop
from optx.optimizers.sgd import sgd as _sgd
from optx.optimizers.sgd_schedule_free import sgd_schedule_free as _sgd_schedule_free
from optx.optimizers.sgd_schedule_free import (
    sgd_schedule_free_closure as _sgd_schedule_free_closure,
)
from optx.optimizers.sparse_adam import sparse_adam as _sparse_adam

# Each class is a name plus its functional constructor, which gives it torch's signature and its
# docstring (optx.optim.signature); written out so type checkers and IDEs see the classes.


class SGD(Optimizer):
    _constructor = staticmethod(_sgd)


class Adam(Optimizer):
    _constructor = staticmethod(_adam)


class AdamW(Optimizer):
    _constructor = staticmethod(_adamw)
    # torch's AdamW is Adam with decoupled weight decay, and its groups say so (also after
    # loading an Adam state_dict: torch's AdamW.__setstate__ sets it on every group).
    _group_extras = {"decoupled_weight_decay": True}


class RMSprop(Optimizer):
    _constructor = staticmethod(_rmsprop)


class Adagrad(Optimizer):
    _constructor = staticmethod(_adagrad)


class Adadelta(Optimizer):
    _constructor = staticmethod(_adadelta)


class NAdam(Optimizer):
    _constructor = staticmethod(_nadam)


class Rprop(Optimizer):
    _constructor = staticmethod(_rprop)


class Adamax(Optimizer):
    _constructor = staticmethod(_adamax)


class ASGD(Optimizer):
    _constructor = staticmethod(_asgd)


class RAdam(Optimizer):
    _constructor = staticmethod(_radam)


class SparseAdam(Optimizer):
    _constructor = staticmethod(_sparse_adam)


class Adafactor(Optimizer):
    _constructor = staticmethod(_adafactor)


class Muon(Optimizer):
    _constructor = staticmethod(_muon)
    _doc_example = {"example_init": "[[0.0, 2.0], [1.0, 3.0]]", "example_args": ", lr=0.1"}


_LBFGS_MAX_ITER = inspect.signature(_lbfgs).parameters["max_iter"].default


class LBFGS(Optimizer):
    _constructor = staticmethod(_lbfgs)
    _needs_value_fn = True
    _doc_example = {"example_args": "", "closure": True}

    def _construct(self, params: Any, arguments: dict[str, Any]) -> None:
        # torch resolves max_eval's default here, in LBFGS.__init__, and stores the int in its
        # defaults and groups: a torch LBFGS loading this state_dict needs it (``None`` fails at
        # its step). The functional optx.lbfgs keeps ``None`` and resolves it the same way.
        max_iter = arguments.get("max_iter", _LBFGS_MAX_ITER)
        if arguments.get("max_eval") is None and isinstance(max_iter, int):
            arguments["max_eval"] = max_iter * 5 // 4
        super()._construct(params, arguments)


# schedulefree 1.4.1's classes: .train()/.eval() and the closure step live in
# optx.optim.schedule_free.


class SGDScheduleFree(_ScheduleFreeTrainEval):
    _constructor = staticmethod(_sgd_schedule_free)


class AdamWScheduleFree(_ScheduleFreeTrainEval):
    _constructor = staticmethod(_adamw_schedule_free)


class RAdamScheduleFree(_ScheduleFreeTrainEval):
    _constructor = staticmethod(_radam_schedule_free)


class SGDScheduleFreeClosure(_ScheduleFreeClosure):
    _constructor = staticmethod(_sgd_schedule_free_closure)


class AdamWScheduleFreeClosure(_ScheduleFreeClosure):
    _constructor = staticmethod(_adamw_schedule_free_closure)


class RAdamScheduleFreeClosure(_ScheduleFreeClosure):
    _constructor = staticmethod(_radam_schedule_free_closure)


__all__ = [
    "CheckpointError",
    "Optimizer",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "load",
    "lr_scheduler",
    "save",
    "swa_utils",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "NAdam",
    "Rprop",
    "Adamax",
    "ASGD",
    "RAdam",
    "SparseAdam",
    "Adafactor",
    "Muon",
    "LBFGS",
    "ZeroRedundancyOptimizer",
    "SGDScheduleFree",
    "AdamWScheduleFree",
    "RAdamScheduleFree",
    "SGDScheduleFreeClosure",
    "AdamWScheduleFreeClosure",
    "RAdamScheduleFreeClosure",
    "ScheduleFreeWrapper",
]
