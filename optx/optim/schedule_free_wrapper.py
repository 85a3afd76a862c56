"""``schedulefree.ScheduleFreeWrapper`` (1.4.1) over any ``optx.optim`` optimizer.

The base optimizer steps on ``z``; the wrapper keeps ``x`` and ``y`` around it as schedulefree's
wrapper does (its memory-efficient version, whose swaps become assignments here), and puts ``z``
into the base's ``state_dict()``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from optx import schedule_free as sf
from optx.optim.optimizer import Optimizer

__all__ = ["ScheduleFreeWrapper"]


@jax.jit
def _wrapper_pre(p: Any, z: Any, lr_wd: Any, lr_wd_y: Any, beta: Any) -> tuple[Any, Any]:
    """Before the base step: weight decay at ``y``, then ``x = lerp(y, z, 1 - 1/beta)``;
    returns ``(z, x)``: the base steps on ``z``, ``x`` waits."""
    z = z - lr_wd * p
    p = p - lr_wd_y * p
    return z, sf.to_eval(p, z, beta)


@jax.jit
def _wrapper_post(x: Any, z: Any, ckp1: Any, beta: Any) -> Any:
    """After the base step: ``x = lerp(x, z, ckp1)``, then ``y = lerp(x, z, 1 - beta)``."""
    return sf.to_train(sf._lerp(x, z, ckp1), z, beta)


class ScheduleFreeWrapper:
    """``schedulefree.ScheduleFreeWrapper`` (1.4.1): makes any ``optx.optim`` optimizer
    schedule-free.

    The base optimizer steps on ``z`` (the gradient being taken at ``y``, the params), and the
    wrapper keeps the average ``x`` and the interpolation ``y`` as schedulefree's wrapper does
    (``ckp1 = weight / weight_sum`` with ``weight = (k+1)**r * lr_max**weight_lr_power`` and
    ``lr = group['lr'] * group.get('d', 1)``). ``.train()``/``.eval()`` move :attr:`params`
    between ``y`` and ``x``; ``step`` in eval mode raises schedulefree's exception. The base's
    groups receive ``k``, ``lr_max`` and ``weight_sum``, and :meth:`state_dict` is the base's
    with each parameter's ``z`` added, as schedulefree's (which stores ``z`` in the base's
    state).

    Args:
      base: the ``optx.optim`` optimizer to wrap (momentum in it is optional: the wrapper's
        ``momentum`` plays that part).
      weight_decay_at_y: weight decay computed at ``y`` (weight decay of the base optimizer is
        computed at ``z``).
      momentum: the interpolation ``beta`` between ``z`` and ``x``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power``.
      r: the average's weights grow as ``(k+1) ** r``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([0.0, 2.0])}
      >>> def loss_fn(p):
      ...     return jnp.sum((p["w"] - 1.0) ** 2)
      >>> opt = optx.optim.ScheduleFreeWrapper(optx.optim.RMSprop(params, lr=0.05))
      >>> opt.train()
      >>> for _ in range(3):
      ...     opt.step(jax.grad(loss_fn)(opt.params))
      >>> opt.eval()
      >>> bool(loss_fn(opt.params) < loss_fn(params))
      True
    """

    def __init__(self, base: Optimizer, weight_decay_at_y: float = 0.0, momentum: float = 0.9,
                 weight_lr_power: float = 2, r: float = 0) -> None:
        self.base = base
        """The wrapped optimizer."""
        self.weight_decay_at_y = weight_decay_at_y
        """Weight decay computed at ``y``."""
        self.weight_lr_power = weight_lr_power
        """The power of ``lr_max`` in the average's weights."""
        self.r = r
        """The power of ``k + 1`` in the average's weights."""
        self.momentum = momentum
        """The interpolation ``beta`` between ``z`` and ``x``."""
        self.train_mode = False
        """Whether :attr:`params` are ``y`` (train mode) or ``x``."""
        # Each group's z, a list in torch's order (group['params']); None: not created yet.
        self._z: list[list[Any]] = []

    # ------------------------------------------------------------------ torch surface
    @property
    def param_groups(self) -> list[Any]:
        """The base optimizer's param groups."""
        return self.base.param_groups

    @property
    def state(self) -> Any:
        """The base optimizer's state mapping (``z`` is in :meth:`state_dict`)."""
        return self.base.state

    @property
    def params(self) -> Any:
        """The base optimizer's params (``y`` in train mode, ``x`` in eval mode)."""
        return self.base.params

    @property
    def opt_state(self) -> Any:
        """The base optimizer's functional state."""
        return self.base.opt_state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """The base's ``add_param_group``.

        Args:
          param_group: the new group (see :meth:`Optimizer.add_param_group`)."""
        self.base.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op, as the base's.

        Args:
          set_to_none: torch's argument, without effect."""
        self.base.zero_grad(set_to_none)

    def _zs(self) -> list[list[Any]]:
        while len(self._z) < len(self.param_groups):
            self._z.append([None] * len(self.param_groups[len(self._z)]["params"]))
        return self._z

    def state_dict(self) -> dict[str, Any]:
        """The base's state_dict with ``z`` in each parameter's state, as schedulefree's."""
        sd = self.base.state_dict()
        index = 0
        for zs in self._zs():
            for z in zs:
                if z is not None:
                    sd["state"].setdefault(index, {})["z"] = np.array(z)
                index += 1
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads schedulefree's wrapper state_dict (``z`` in each entry) into the base and the
        wrapper; on any error nothing changes.

        Args:
          state_dict: as :meth:`state_dict` or schedulefree's wrapper gives it (arrays as
            numpy arrays)."""
        if not isinstance(state_dict, dict) or "state" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        base_state: dict[Any, Any] = {}
        zs: list[list[Any]] = []
        index = 0
        for g in self.param_groups:
            row = []
            for p in g["params"]:
                entry = state_dict["state"].get(index)
                z: Any = None
                if isinstance(entry, dict) and "z" in entry:
                    value = np.asarray(entry["z"])
                    if value.shape != p.shape:
                        raise ValueError(f"state 'z' of parameter {index} has shape "
                                         f"{value.shape}, expected {p.shape}")
                    z = jnp.array(value, dtype=p.dtype)
                row.append(z)
                index += 1
            zs.append(row)
        for key, entry in state_dict["state"].items():
            rest = ({k: v for k, v in entry.items() if k != "z"} if isinstance(entry, dict)
                    else entry)
            if rest != {}:
                base_state[key] = rest
        self.base.load_state_dict({**state_dict, "state": base_state})
        self._z = zs

    # ------------------------------------------------------------------ train / eval
    def _move(self, to_train: bool) -> None:
        new = {}
        for g, zs in zip(self.param_groups, self._zs()):
            for p, z in zip(g["params"], zs):
                if z is not None:
                    move = sf.to_train if to_train else sf.to_eval
                    new[id(p)] = move(p, z, self.momentum)
        if new:
            self.base.params = jax.tree_util.tree_map(lambda p: new.get(id(p), p),
                                                      self.base.params)

    def eval(self) -> None:
        """schedulefree's ``eval()``: in train mode, the params move to ``x``."""
        if self.train_mode:
            self._move(False)
        self.train_mode = False

    def train(self) -> None:
        """schedulefree's ``train()``: in eval mode, the params move to ``y``."""
        if not self.train_mode:
            self._move(True)
        self.train_mode = True

    def step(self, grads: Any = None, closure: Callable[[Any], Any] | None = None) -> Any:
        """One step: the base steps on ``z`` with the gradient at ``y`` (the params).

        Args:
          grads: the gradients at :attr:`params`, shaped like them (``None`` leaves skip their
            parameter); or the closure, as torch passes it.
          closure: ``closure(params) -> loss``; its gradients are taken at :attr:`params`.

        Returns:
          The closure's loss, or ``None``."""
        if not self.train_mode:
            raise Exception(sf.NOT_TRAIN_MODE)
        if closure is None and callable(grads):
            grads, closure = None, grads
        loss = None
        if closure is not None:
            loss, grads = jax.value_and_grad(closure)(self.base.params)
        params = self.base.params
        p_leaves, treedef = jax.tree_util.tree_flatten(params)
        g_of = {id(p): g for p, g in zip(
            p_leaves, treedef.flatten_up_to(grads))}  # type: ignore[attr-defined]
        zs = self._zs()
        beta = self.momentum
        as_z, xs = {}, {}
        for g, row in zip(self.param_groups, zs):
            lr = g["lr"]
            wd = self.weight_decay_at_y
            for pos, p in enumerate(g["params"]):
                if g_of.get(id(p)) is None:
                    continue
                z = p if row[pos] is None else row[pos]
                as_z[id(p)], xs[id(p)] = _wrapper_pre(p, z, lr * wd, lr * wd * (1 - beta), beta)
        before = [list(g["params"]) for g in self.param_groups]
        self.base.params = jax.tree_util.tree_map(lambda p: as_z.get(id(p), p), params)
        base_grads = treedef.unflatten(  # type: ignore[attr-defined]
            [g_of[id(p)] for p in p_leaves])
        self.base.step(base_grads)
        new = {}
        for gi, (g, row) in enumerate(zip(self.param_groups, zs)):
            k = g.get("k", 0)
            lr = g["lr"] * g.get("d", 1.0)
            lr_max = max(lr, g.get("lr_max", 0))
            weight = ((k + 1) ** self.r) * (lr_max ** self.weight_lr_power)
            weight_sum = g.get("weight_sum", 0.0) + weight
            ckp1 = weight / weight_sum
            for pos, (old, z) in enumerate(zip(before[gi], g["params"])):
                x = xs.get(id(old))
                if x is None:
                    continue
                row[pos] = z
                new[id(z)] = _wrapper_post(x, z, ckp1, beta)
            g["lr_max"], g["weight_sum"], g["k"] = lr_max, weight_sum, k + 1
        self.base.params = jax.tree_util.tree_map(lambda p: new.get(id(p), p), self.base.params)
        return loss
