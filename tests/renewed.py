"""Shared machinery of the ports of torch's ``TestOptimRenewed`` (``test/test_optim.py``):
torch's own optimizer database ``optim_db`` and a torch/optx pair that runs one call sequence on
both frameworks.

``optim_db`` (``torch.testing._internal.common_optimizers``) holds, per optimizer, the
configurations torch's tests run (``optim_inputs_func``), the error inputs with the exception
torch raises (``optim_error_inputs_func``) and the schedulers its lr-scheduler tests attach.
The tests build every configuration from it, so a configuration torch adds is tested here too.

A :class:`Pair` holds a torch optimizer and its ``optx.optim`` port over the same float64
parameters: ``pair.step()`` sets ``p.grad`` and calls ``step()`` in torch and calls
``opt.step(grads)`` in optx, each side with the gradient at its own parameters (``None`` for a
parameter without one, on both sides); ``pair.check()`` compares the parameters. Parameters
are 2-D (Muon takes only matrices) and the loss is a weighted ``sum_i ||p_i - c_i||^2``,
written for numpy (the gradients both sides get), torch and jax (the closures of
``step(closure)``).
"""

from __future__ import annotations

import contextlib
import sys
import types
import unittest
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch_versions import with_newer_defaults

import optx.optim as O

torch.set_default_dtype(torch.float64)


def _common_optimizers() -> types.ModuleType:
    # torch's test utilities import ``expecttest`` (a test-only dependency of torch) for their
    # TestCase base class; none of what is used here needs it.
    try:
        import expecttest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("expecttest")
        stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
        sys.modules["expecttest"] = stub
    from torch.testing._internal import common_optimizers

    return common_optimizers


common_optimizers = _common_optimizers()
OptimizerErrorEnum = common_optimizers.OptimizerErrorEnum
DB = {info.name: info for info in common_optimizers.optim_db}
NAMES = list(DB)
WITH_GROUPS = [n for n in NAMES if DB[n].supports_param_groups]
RTOL = 1e-10
ATOL = 1e-13  # below it, entries near zero (LBFGS's last direction) are rounding noise
SHAPES = ((2, 3), (3, 2))



# ---------------------------------------------------------------------------------- configs
def configs(name: str, cliquey: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """``(desc, kwargs)`` of torch's CPU configurations of ``name``; ``cliquey`` adds the
    variants with each implementation switch (``foreach``, ``fused``, ``differentiable``) on."""
    info = DB[name]
    if cliquey:
        inputs = common_optimizers._get_optim_inputs_including_global_cliquey_kwargs(
            "cpu", torch.float64, info)
    else:
        inputs = info.optim_inputs_func(device="cpu")
    return [(i.desc, i.kwargs) for i in inputs]


def pick(name: str, turn: int, ok: Callable[[dict[str, Any]], bool] = lambda kw: True,
         cliquey: bool = False) -> tuple[str, dict[str, Any]]:
    """``(desc, kwargs)``: one of torch's configurations of ``name`` satisfying ``ok``. Each
    test family passes its own ``turn``, shifted by the optimizer's place in ``optim_db``, so
    that one family runs several kinds of configuration and the families together most of
    torch's list, while each builds one optimizer per case."""
    candidates = [c for c in configs(name, cliquey) if ok(c[1])]
    return candidates[(turn + NAMES.index(name)) % len(candidates)]


# ---------------------------------------------------------------------------------- conversion
def to_optx(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """torch's inputs as optx takes them: tensors as jax arrays (one array per tensor, so a
    tensor given twice is one array given twice), containers rebuilt around them."""
    memo = {} if memo is None else memo
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            memo[id(value)] = jnp.asarray(value.detach().numpy().copy())
        return memo[id(value)]
    if isinstance(value, dict):
        return {k: to_optx(v, memo) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_optx(v, memo) for v in value)
    if isinstance(value, list):
        return [to_optx(v, memo) for v in value]
    return value


def to_numpy(value: Any) -> Any:
    """A torch or optx state_dict (or any nesting) with every array as a numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy().copy()
    if isinstance(value, jax.Array):
        return np.asarray(value)
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy(v) for v in value)
    return value


def assert_same(a: Any, b: Any, rtol: float = RTOL, where: str = "") -> None:
    """``a`` and ``b`` (state_dicts, lists, numbers; torch, jax or numpy arrays) are equal:
    the same keys and structure, numbers to ``rtol`` of the largest magnitude (plus
    :data:`ATOL`)."""
    a, b = to_numpy(a), to_numpy(b)
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), f"{where}: {type(a)} vs {type(b)}"
        assert set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            assert_same(a[k], b[k], rtol, f"{where}[{k!r}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape, f"{where}: shape {x.shape} vs {y.shape}"
        scale = max(float(np.max(np.abs(y), initial=0.0)), 1e-300)
        err = float(np.max(np.abs(x - y), initial=0.0)) if x.size else 0.0
        if not np.isfinite(err):
            assert np.array_equal(x, y, equal_nan=True), f"{where}: {x} vs {y}"
            return
        assert err <= rtol * scale + ATOL, f"{where}: differ by {err:.3g} (scale {scale:.3g})"
    elif isinstance(a, (list, tuple)) and not isinstance(a, str):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, rtol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        numbers = isinstance(b, (int, float)) and isinstance(a, (int, float))
        assert numbers, f"{where}: {a!r} vs {b!r}"
        assert a == b or abs(a - b) <= rtol * max(abs(a), abs(b)) + ATOL, f"{where}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def torch_state_dict(opt: Any) -> dict[str, Any]:
    """``opt.state_dict()`` of a torch optimizer as optx's reads, where they differ on purpose:
    a 1-element tensor hyperparameter (``lr=torch.tensor([1e-3])``) is the Python number optx
    holds (torch reads it through ``_to_scalar`` at each step). Under a torch older than a
    group key optx follows (LBFGS's ``maximize`` before 2.14), the key is added with the value
    the newer torch stores for an optimizer built without it, its default
    (:func:`torch_versions.with_newer_defaults`)."""
    sd = opt.state_dict()
    groups = []
    for g in sd["param_groups"]:
        g = {k: v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
             for k, v in g.items()}
        groups.append(with_newer_defaults(type(opt).__name__, g))
    return {**sd, "param_groups": groups}



# ---------------------------------------------------------------------------------- the loss
def make_params(seed: int = 0, shapes: Sequence[tuple[int, ...]] = SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


def _targets(params: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, p in enumerate(params):
        shape = tuple(p.shape)
        k = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
        out.append((1.0 + 0.5 * np.cos(k + i), np.sin(2.0 * k + i)))  # (weights, target)
    return out


# sum_i w_i * (p_i - c_i)^2, elementwise: its gradient rounds the same in numpy, torch and jax.
# (torch's tests take ||W @ x + b||^2, whose matmul rounds differently in each framework and
# whose flat directions let LBFGS with a small lr amplify that to 1e-6 in three steps.)
def loss_np(params: Sequence[np.ndarray]) -> float:
    return float(sum(np.sum(w * (p - c) ** 2) for p, (w, c) in zip(params, _targets(params))))


def grads_np(params: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [2.0 * w * (p - c) for p, (w, c) in zip(params, _targets(params))]


def loss_torch(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((torch.tensor(w) * (p - torch.tensor(c)) ** 2).sum()
               for p, (w, c) in zip(params, _targets(params)))


def loss_jax(params: Sequence[jax.Array]) -> jax.Array:
    return sum(jnp.sum(jnp.asarray(w) * (p - jnp.asarray(c)) ** 2)
               for p, (w, c) in zip(params, _targets(params)))


# ---------------------------------------------------------------------------------- the pair
class Pair:
    """A torch optimizer and its optx port over the same parameters.

    ``groups`` is a list of numpy arrays (one group) or of group dicts whose ``params`` are
    lists of numpy arrays; ``params`` of both sides are flat lists in torch's order.
    """

    def __init__(self, name: str, groups: Any, *args: Any, **kwargs: Any) -> None:
        self.name = name
        self.info = DB[name]
        self.multi = isinstance(groups[0], dict)
        gs = groups if self.multi else [{"params": groups}]
        self.t_params: list[torch.Tensor] = []
        self.names: list[str | None] = []
        t_groups, x_groups = [], []
        for g in gs:
            t_ps, x_ps = [], []
            for p in g["params"]:  # an array, or a (name, array) pair
                name_, value = p if isinstance(p, tuple) else (None, p)
                t, x = torch.tensor(np.array(value), requires_grad=True), jnp.asarray(value)
                self.t_params.append(t)
                self.names.append(name_)
                t_ps.append(t if name_ is None else (name_, t))
                x_ps.append(x if name_ is None else (name_, x))
            t_groups.append({**g, "params": t_ps})
            x_groups.append({**to_optx(g), "params": x_ps})
        self.sizes = [len(g["params"]) for g in gs]
        # step(closure) maximizes the negated loss when maximize=True (torch 2.14's LBFGS
        # configurations "maximize", "maximize_strong_wolfe"): it has a maximum, as the loss has a
        # minimum. Maximizing the convex loss itself is unbounded: strong-Wolfe extrapolates to
        # t ~ 1e13 in one step, where losses ~ 1e26 differ between torch's and XLA's summation
        # order in their last bits, and the bracketing picks differ (LBFGS minimizing an
        # unbounded function differs likewise, with any torch version).
        self.sign = -1.0 if kwargs.get("maximize") else 1.0
        self.torch = self.info.optim_cls(t_groups if self.multi else t_groups[0]["params"],
                                         *args, **kwargs)
        self.optx = getattr(O, name)(x_groups if self.multi else x_groups[0]["params"],
                                     *to_optx(args), **to_optx(kwargs))

    # -- parameters
    def torch_params(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.t_params]

    @property
    def named(self) -> bool:
        """Whether optx holds the params as one dict keyed by their names (named groups)."""
        return None not in self.names

    def _flat(self, params: Any) -> list[Any]:
        """optx's ``params`` (or a tree shaped like them) as a flat list in torch's order."""
        if self.named:
            return [params[n] for n in self.names]
        return [p for g in params for p in g] if self.multi else list(params)

    def optx_params(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self._flat(self.optx.params)]

    def check(self, rtol: float = RTOL) -> None:
        assert_same(self.optx_params(), self.torch_params(), rtol, f"{self.name} params")

    # -- steps
    def _nest(self, flat: list[Any]) -> Any:
        if self.named:
            return dict(zip(self.names, flat))
        if not self.multi:
            return flat
        out, i = [], 0
        for n in self.sizes:
            out.append(flat[i:i + n])
            i += n
        return out

    def step(self, grad_fn: Callable[[list[np.ndarray]], list[Any]] = grads_np,
             skip: Sequence[int] = ()) -> None:
        """One step on both sides, each with ``grad_fn`` of its own parameters (default: the
        loss's gradient); the parameters listed in ``skip`` (and ``None`` entries) have no
        gradient: ``p.grad = None`` in torch, a ``None`` leaf in optx."""
        t_grads = grad_fn(self.torch_params())
        x_grads = grad_fn(self.optx_params())
        for i, (p, g) in enumerate(zip(self.t_params, t_grads)):
            if g is None or i in skip:
                p.grad = None
            else:
                p.grad = torch.tensor(np.array(g))
                if self.info.only_supports_sparse_grads:
                    p.grad = p.grad.to_sparse()
        self.torch.step()
        self.optx.step(self._nest([None if g is None or i in skip else jnp.asarray(g)
                                   for i, g in enumerate(x_grads)]))

    def run(self, n: int, grad_fn: Callable[[list[np.ndarray]], list[Any]] = grads_np) -> None:
        """``n`` steps: ``step_closure`` for an optimizer that needs a closure (LBFGS)."""
        for _ in range(n):
            if self.info.step_requires_closure:
                self.step_closure()
            else:
                self.step(grad_fn)

    def step_closure(self) -> tuple[Any, Any]:
        """``step(closure)`` on both sides with the loss; returns both losses."""

        def closure():
            self.torch.zero_grad()
            loss = sign * loss_torch(self.t_params)
            loss.backward()
            if self.info.only_supports_sparse_grads:
                for p in self.t_params:
                    p.grad = p.grad.to_sparse()
            return loss

        # The closure reads the names, not the Pair: the optimizer's closure cache keys on what
        # a closure reads, and the Pair's torch tensors change at every step.
        names, multi, named, sign = list(self.names), self.multi, self.named, self.sign

        def flat(params):
            if named:
                return [params[n] for n in names]
            return [p for g in params for p in g] if multi else list(params)

        t_loss = self.torch.step(closure).detach()
        x_loss = self.optx.step(lambda params: sign * loss_jax(flat(params)))
        return t_loss, x_loss


def fresh(name: str, turn: int) -> tuple[Any, Any]:
    """A new torch optimizer and its optx port over one (2, 3) parameter, with one of torch's
    configurations (``pick``), implementation switches included."""
    desc, kwargs = pick(name, turn, cliquey=True)
    param = np.random.default_rng(0).random((2, 3))
    return (DB[name].optim_cls([torch.tensor(param)], **kwargs),
            getattr(O, name)([jnp.asarray(param)], **to_optx(kwargs)))


def optx_scheduler(make: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``make`` (one of ``optim_db``'s ``lambda opt: StepLR(opt, ...)``) with the scheduler
    classes it names taken from ``optx.optim.lr_scheduler``: the same call on an optx
    optimizer."""
    names = {n: getattr(O.lr_scheduler, n) for n in make.__code__.co_names
             if hasattr(O.lr_scheduler, n)}
    return types.FunctionType(make.__code__, {**make.__globals__, **names}, make.__name__,
                              make.__defaults__, make.__closure__)


def step_schedulers(schedulers: Sequence[Any], loss: Any) -> None:
    """torch's loop: ``step(loss)`` for ReduceLROnPlateau, ``step()`` for the others."""
    for s in schedulers:
        if type(s).__name__ == "ReduceLROnPlateau":
            s.step(float(loss))
        else:
            s.step()


# Run compiled: their op-by-op warm-up costs more (3-5 s each) than a compiled step per test.
COMPILED = frozenset({"Muon", "LBFGS", "Adafactor"})
EAGER_STEPS = 15


def mode(name: str, steps: int, compiled: bool = False) -> contextlib.AbstractContextManager[Any]:
    """How a test of ``name`` taking ``steps`` steps per optimizer runs optx's steps: op by op
    (``jax.disable_jit``) for a few steps, compiled for more steps, for ``compiled`` (complex
    dtypes) and for :data:`COMPILED`.

    A compiled step costs a compile per optimizer instance (0.2-1.5 s of CPU), an eager step
    a dispatch per operation (10-100 ms), each operation compiled once per shape and dtype
    for the whole session. The tests build a new optimizer for each of torch's cases and step
    it a few times, so eagerly all fifteen optimizers stay affordable. What they check is
    torch's object model (groups, missing gradients, schedulers, state_dicts); the compiled
    step's numbers are test_parity's and test_variants'.
    """
    if compiled or name in COMPILED or steps > EAGER_STEPS:
        return contextlib.nullcontext()
    return jax.disable_jit()
