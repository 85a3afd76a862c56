"""``torch.optim`` for JAX: rename ``torch.optim`` to ``optx.optim`` and pass gradients.

Every class is a name plus an optx functional constructor; see :class:`Optimizer`.
"""

from __future__ import annotations

import optx as _optx
from optx.optim import lr_scheduler, swa_utils
from optx.optim.optimizer import Optimizer

_CLASSES = {
    "SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop", "Adagrad": "adagrad",
    "Adadelta": "adadelta", "NAdam": "nadam", "Rprop": "rprop", "Adamax": "adamax",
    "ASGD": "asgd", "RAdam": "radam", "SparseAdam": "sparse_adam", "Adafactor": "adafactor",
    "Muon": "muon", "LBFGS": "lbfgs",
}

__all__ = ["Optimizer", "lr_scheduler", "swa_utils"]

for _cls, _fn in _CLASSES.items():
    _constructor = getattr(_optx, _fn, None)
    if _constructor is None:
        continue
    globals()[_cls] = type(
        _cls,
        (Optimizer,),
        {
            "_constructor": staticmethod(_constructor),
            "_needs_value_fn": _fn == "lbfgs",
            "__doc__": f"``torch.optim.{_cls}`` over :func:`optx.{_fn}`.",
            "__module__": __name__,
        },
    )
    __all__.append(_cls)
