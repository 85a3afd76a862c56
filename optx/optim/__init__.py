"""``torch.optim`` for JAX: rename ``torch.optim`` to ``optx.optim`` and pass gradients.

Every class is a name plus an optx functional constructor; see :class:`Optimizer`.
"""

from __future__ import annotations

import optx as _optx
from optx.optim import lr_scheduler, swa_utils
from optx.optim.checkpoint import CheckpointError, load, save
from optx.optim.grad_utils import clip_grad_norm_, clip_grad_value_, get_total_norm
from optx.optim.optimizer import Optimizer
from optx.optim.zero_redundancy import ZeroRedundancyOptimizer

# Each class is a name plus its functional constructor; written out so type checkers and IDEs
# see them.


class SGD(Optimizer):
    """``torch.optim.SGD`` over :func:`optx.sgd`."""

    _constructor = staticmethod(_optx.sgd)


class Adam(Optimizer):
    """``torch.optim.Adam`` over :func:`optx.adam`."""

    _constructor = staticmethod(_optx.adam)


class AdamW(Optimizer):
    """``torch.optim.AdamW`` over :func:`optx.adamw`."""

    _constructor = staticmethod(_optx.adamw)


class RMSprop(Optimizer):
    """``torch.optim.RMSprop`` over :func:`optx.rmsprop`."""

    _constructor = staticmethod(_optx.rmsprop)


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` over :func:`optx.adagrad`."""

    _constructor = staticmethod(_optx.adagrad)


class Adadelta(Optimizer):
    """``torch.optim.Adadelta`` over :func:`optx.adadelta`."""

    _constructor = staticmethod(_optx.adadelta)


class NAdam(Optimizer):
    """``torch.optim.NAdam`` over :func:`optx.nadam`."""

    _constructor = staticmethod(_optx.nadam)


class Rprop(Optimizer):
    """``torch.optim.Rprop`` over :func:`optx.rprop`."""

    _constructor = staticmethod(_optx.rprop)


class Adamax(Optimizer):
    """``torch.optim.Adamax`` over :func:`optx.adamax`."""

    _constructor = staticmethod(_optx.adamax)


class ASGD(Optimizer):
    """``torch.optim.ASGD`` over :func:`optx.asgd`."""

    _constructor = staticmethod(_optx.asgd)


class RAdam(Optimizer):
    """``torch.optim.RAdam`` over :func:`optx.radam`."""

    _constructor = staticmethod(_optx.radam)


class SparseAdam(Optimizer):
    """``torch.optim.SparseAdam`` over :func:`optx.sparse_adam`."""

    _constructor = staticmethod(_optx.sparse_adam)


class Adafactor(Optimizer):
    """``torch.optim.Adafactor`` over :func:`optx.adafactor`."""

    _constructor = staticmethod(_optx.adafactor)


class Muon(Optimizer):
    """``torch.optim.Muon`` over :func:`optx.muon`."""

    _constructor = staticmethod(_optx.muon)


class LBFGS(Optimizer):
    """``torch.optim.LBFGS`` over :func:`optx.lbfgs`."""

    _constructor = staticmethod(_optx.lbfgs)
    _needs_value_fn = True


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
]
