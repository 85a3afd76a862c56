"""``torch.distributed.optim.ZeroRedundancyOptimizer``: any ``optx.optim`` optimizer with its
state sharded across the devices of a mesh (ZeRO-1) and its params replicated.

The class is the generic :class:`optx.optim.Optimizer` with its arrays placed: params on every
device, state split by :func:`optx.sharding.zero_shardings`, and the jitted step told to keep
those shardings, so XLA updates each device's slice of the state and all-gathers the new params.
The math is the wrapped optimizer's, unchanged: the trajectory equals the unsharded one.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optx.optim.optimizer import Optimizer
from optx.sharding import zero_shardings


def _concrete_optimizers(base: type[Optimizer]) -> list[type[Optimizer]]:
    found = []
    for sub in base.__subclasses__():
        if "_constructor" in vars(sub) and sub.__module__ == "optx.optim":
            found.append(sub)
        found.extend(_concrete_optimizers(sub))
    return found


def _optx_class(optimizer_class: Any) -> type[Optimizer]:
    """``optimizer_class`` as an optx.optim class; torch's classes map to theirs by name."""
    if isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer):
        if not hasattr(optimizer_class, "_constructor"):
            raise TypeError("optimizer_class must be a concrete optx.optim optimizer class")
        return optimizer_class
    module = getattr(optimizer_class, "__module__", "") or ""
    if isinstance(optimizer_class, type) and module.startswith("torch.optim"):
        # The optx class of that name, found among Optimizer's subclasses (importing
        # optx.optim here would be an import cycle).
        for found in _concrete_optimizers(Optimizer):
            if found.__name__ == optimizer_class.__name__:
                return found
    raise TypeError(
        f"optimizer_class must be an optx.optim optimizer class (e.g. optx.optim.AdamW), "
        f"got {optimizer_class!r}"
    )


_CLASSES: dict[type[Optimizer], type[ZeroRedundancyOptimizer]] = {}


def _zero_class(optimizer_class: type[Optimizer]) -> type[ZeroRedundancyOptimizer]:
    # A subclass of both: the wrapped class supplies the constructor (and LBFGS's closure
    # handling), this one the placement; isinstance(opt, optimizer_class) holds.
    if optimizer_class not in _CLASSES:
        _CLASSES[optimizer_class] = type(
            "ZeroRedundancyOptimizer",
            (ZeroRedundancyOptimizer, optimizer_class),
            {"__module__": __name__, "__qualname__": "ZeroRedundancyOptimizer"},
        )
    return _CLASSES[optimizer_class]


@functools.cache
def _replicator(sharding: NamedSharding) -> Callable[[Any], Any]:
    # A jitted identity: gathers sharded arrays, also across processes.
    return jax.jit(lambda tree: tree, out_shardings=sharding)


def _put(tree: Any, shardings: Any) -> Any:
    """``tree`` on ``shardings``, leaving leaves already there untouched (no copy, no call)."""

    def put(x: Any, s: NamedSharding) -> Any:
        if isinstance(x, jax.Array) and x.sharding == s:
            return x
        return jax.device_put(x, s)

    return jax.tree_util.tree_map(put, tree, shardings)


class ZeroRedundancyOptimizer(Optimizer):
    """``torch.distributed.optim.ZeroRedundancyOptimizer`` over any ``optx.optim`` optimizer.

    Args:
      params: parameters or param groups, as for ``optimizer_class``.
      optimizer_class: the optimizer, e.g. ``optx.optim.AdamW`` (``torch.optim.AdamW`` is
        accepted and mapped to it).
      mesh: the devices: params are replicated on all of them and the state is split across
        all of its axes. ``None`` means every device (``jax.devices()``, every process's).
      process_group, parameters_as_bucket_view, overlap_with_ddp: torch's arguments. The mesh
        plays the process group's part, so ``process_group`` must be None; bucket views are a
        torch memory layout (ignored); ``overlap_with_ddp=True`` is refused.
      **defaults: the optimizer's hyperparameters.

    Each device keeps about 1/N of the state (a slot is split along its largest dimension
    divisible by N; one without such a dimension stays whole on every device), the step updates
    each slice where it lives and all-gathers the new params. The trajectory is exactly the
    unsharded optimizer's. ``state_dict()`` is the full state in torch's layout on every process
    (``consolidate_state_dict()`` is accepted and not needed); ``load_state_dict`` re-shards it.
    ``param_groups`` and lr schedulers work as with any ``optx.optim`` optimizer.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # ZeroRedundancyOptimizer(params, Adam, ...) is an instance of a subclass of both;
        # copy/pickle call __new__ on that subclass without arguments.
        if cls is ZeroRedundancyOptimizer:
            if len(args) < 2 and "optimizer_class" not in kwargs:
                raise TypeError("ZeroRedundancyOptimizer() missing argument 'optimizer_class'")
            optimizer_class = args[1] if len(args) > 1 else kwargs["optimizer_class"]
            cls = _zero_class(_optx_class(optimizer_class))
        return object.__new__(cls)

    def __init__(
        self,
        params: Any,
        optimizer_class: Any,
        mesh: Mesh | None = None,
        *,
        process_group: Any = None,
        parameters_as_bucket_view: bool = False,
        overlap_with_ddp: bool = False,
        **defaults: Any,
    ) -> None:
        del parameters_as_bucket_view
        if process_group is not None:
            raise ValueError(
                "ZeroRedundancyOptimizer: pass the devices as a jax.sharding.Mesh (mesh=...); "
                "process_group is torch's"
            )
        if overlap_with_ddp:
            raise ValueError("ZeroRedundancyOptimizer: overlap_with_ddp=True is not supported")
        if mesh is None:
            mesh = Mesh(np.array(jax.devices()), ("data",))
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        self.optimizer_class = _optx_class(optimizer_class)
        self.mesh = mesh
        self._axis = tuple(mesh.axis_names)
        self._replicated = NamedSharding(mesh, P())
        super().__init__(params, **defaults)

    # ------------------------------------------------------------------ placement
    # The narrow methods the generic optimizer calls where its arrays are made or compiled.
    def _place_params(self, tree: Any) -> Any:
        """Params (and gradients) replicated on every device; a no-op where already so."""
        return _put(tree, jax.tree_util.tree_map(lambda _: self._replicated, tree))

    def _place_state(self, state: Any) -> Any:
        """A group's state split across the mesh."""
        return _put(state, zero_shardings(state, self.mesh, self._axis))

    def _jit(self, run: Callable[..., Any]) -> Callable[..., Any]:
        states = [zero_shardings(s.state, self.mesh, self._axis) for s in self._slots]
        out = ([self._replicated] * len(self._slots), states)
        return jax.jit(run, donate_argnums=(0, 1), out_shardings=out)

    def _full_states(self) -> list[Any]:
        """The whole state of each group (state_dict is the unsharded one on every process)."""
        return list(_replicator(self._replicated)([s.state for s in self._slots]))

    # ------------------------------------------------------------------ torch surface
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Accepted for torch's call sequence: :meth:`state_dict` always gathers the full state.

        Args:
          to: the process torch would gather on; checked to be a process index."""
        if not 0 <= int(to) < jax.process_count():
            raise ValueError(f"to={to} is not a process index (0..{jax.process_count() - 1})")


# `__new__(cls, *args, **kwargs)` would be the signature help() and the docs show.
_init_signature = inspect.signature(ZeroRedundancyOptimizer.__init__, eval_str=True)
ZeroRedundancyOptimizer.__signature__ = _init_signature.replace(  # type: ignore[attr-defined]
    parameters=list(_init_signature.parameters.values())[1:])
