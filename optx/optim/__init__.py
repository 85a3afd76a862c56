"""``torch.optim`` for JAX: rename ``torch.optim`` to ``optx.optim`` and pass gradients.

Every class is a name plus an optx functional constructor; see :class:`Optimizer`.
"""

from __future__ import annotations

import inspect
from typing import Any

from optx.optim import lr_scheduler, swa_utils
from optx.optim.checkpoint import CheckpointError, load, save
from optx.optim.grad_utils import (
    accumulate,
    all_finite,
    clip_grad_norm_,
    clip_grad_value_,
    get_total_norm,
)
from optx.optim.optimizer import Optimizer
from optx.optim.schedule_free import _Closure as _ScheduleFreeClosure
from optx.optim.schedule_free import _TrainEval as _ScheduleFreeTrainEval
from optx.optim.schedule_free_wrapper import ScheduleFreeWrapper
from optx.optim.torch_interop import to_torch_state_dict
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
from optx.optimizers.low_bit import adam_4bit as _adam_4bit
from optx.optimizers.low_bit import adam_8bit as _adam_8bit
from optx.optimizers.low_bit import adam_fp8 as _adam_fp8
from optx.optimizers.low_bit import adamw_4bit as _adamw_4bit
from optx.optimizers.low_bit import adamw_8bit as _adamw_8bit
from optx.optimizers.low_bit import adamw_fp8 as _adamw_fp8
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


class _LowBit(Optimizer):
    """torchao's low-bit optimizers: ``block_size`` and ``bf16_stochastic_round`` are attributes
    of torchao's optimizer, not keys of its param groups, so its state_dict lacks them; a
    loaded group that lacks them keeps this optimizer's values."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``Optimizer.load_state_dict``, which also takes torchao's ``state_dict()`` (its
        ``OptimState8bit``/``4bit``/``Fp8`` moments, or their fields as arrays); a group that
        lacks ``block_size`` or ``bf16_stochastic_round`` (torchao keeps them on the optimizer)
        keeps this optimizer's.

        Args:
          state_dict: as :meth:`state_dict` or torchao's ``optimizer.state_dict()`` gives it."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(groups, (list, tuple)) and len(groups) == len(self.param_groups):
            filled = [
                {**{k: mine[k] for k in _TORCHAO_OPTIMIZER_ARGS},
                 **{k: _from_torch(v) for k, v in g.items()}}
                if isinstance(g, dict) else g for g, mine in zip(groups, self.param_groups)
            ]
            state_dict = {**state_dict, "param_groups": filled}
        super().load_state_dict(state_dict)


_TORCHAO_OPTIMIZER_ARGS = ("block_size", "bf16_stochastic_round")


def _from_torch(value: Any) -> Any:
    """A torch tensor (torchao's groups hold ``lr`` as one) as numpy; anything else as is."""
    if type(value).__module__.startswith("torch") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


class Adam8bit(_LowBit):
    _constructor = staticmethod(_adam_8bit)


class AdamW8bit(_LowBit):
    _constructor = staticmethod(_adamw_8bit)


class Adam4bit(_LowBit):
    _constructor = staticmethod(_adam_4bit)


class AdamW4bit(_LowBit):
    _constructor = staticmethod(_adamw_4bit)


class AdamFp8(_LowBit):
    _constructor = staticmethod(_adam_fp8)


class AdamWFp8(_LowBit):
    _constructor = staticmethod(_adamw_fp8)


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
    "accumulate",
    "all_finite",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "load",
    "lr_scheduler",
    "save",
    "swa_utils",
    "to_torch_state_dict",
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
    "Adam8bit",
    "AdamW8bit",
    "Adam4bit",
    "AdamW4bit",
    "AdamFp8",
    "AdamWFp8",
    "ZeroRedundancyOptimizer",
    "SGDScheduleFree",
    "AdamWScheduleFree",
    "RAdamScheduleFree",
    "SGDScheduleFreeClosure",
    "AdamWScheduleFreeClosure",
    "RAdamScheduleFreeClosure",
    "ScheduleFreeWrapper",
]
