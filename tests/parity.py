"""Shared machinery for parity tests against real torch.

A test runs the same optimizer in torch and in optx from the same float64 parameters, feeding
both the same deterministic gradient function of (params, step). The gradient changes sign over
time, so sign-based (Rprop) and max-based (amsgrad, Adamax) paths are exercised.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

import optx

torch.set_default_dtype(torch.float64)

SHAPES: tuple[tuple[int, ...], ...] = ((3, 4), (5,), ())


def make_params(seed: int = 0, shapes: Sequence[tuple[int, ...]] = SHAPES, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def grad_fn(params: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """A gradient that depends on the params and flips sign as k advances."""
    out = []
    for i, p in enumerate(params):
        phase = 0.7 * k + 0.37 * np.arange(p.size, dtype=p.dtype).reshape(p.shape) + i
        out.append((np.cos(phase) * (1.0 + 0.5 * np.tanh(p)) + 0.1 * p).astype(p.dtype))
    return out


def run_torch(
    cls: Any,
    kwargs: dict,
    params0: Sequence[np.ndarray],
    steps: int,
    grads: Callable = grad_fn,
) -> list[list[np.ndarray]]:
    ps = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = cls(ps, **kwargs)
    traj = []
    for k in range(steps):
        gs = grads([p.detach().numpy() for p in ps], k)
        for p, g in zip(ps, gs):
            p.grad = torch.from_numpy(np.array(g, copy=True))
        opt.step()
        traj.append([p.detach().numpy().copy() for p in ps])
    return traj


def torch_step(opt: Any, ps: Sequence[Any], k: int, grads: Callable = grad_fn) -> list:
    """One torch ``opt.step()`` with ``grads(params, k)`` as the gradients of the tensors
    ``ps``; returns those gradients (numpy), for optx's step to take the same."""
    gs = grads([p.detach().numpy() for p in ps], k)
    for p, g in zip(ps, gs, strict=True):
        p.grad = torch.from_numpy(np.array(g, copy=True))
    opt.step()
    return gs


def run_optx(
    tx: optx.GradientTransformation,
    params0: Sequence[np.ndarray],
    steps: int,
    grads: Callable = grad_fn,
    jit: bool = True,
) -> list[list[np.ndarray]]:
    params = [jnp.asarray(p) for p in params0]
    step = functools.partial(apply_update, tx)
    return trajectory(jax.jit(step) if jit else step, params, tx.init(params), steps, grads)


def apply_update(tx: optx.GradientTransformation, params, state, grads):
    """One update applied: ``(params, state) -> (new params, new state)``."""
    updates, state = tx.update(grads, state, params)
    return optx.apply_updates(params, updates), state


def trajectory(step: Callable, params, state, steps: int, grads: Callable = grad_fn):
    """The params after each of ``steps`` calls ``step(params, state, grads(params, k))``."""
    traj = []
    for k in range(steps):
        g = [jnp.asarray(x) for x in grads([np.asarray(p) for p in params], k)]
        params, state = step(params, state, g)
        traj.append([np.asarray(p) for p in params])
    return traj


def max_rel_error(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    """Worst over steps and leaves of ||a - b||_inf / ||b||_inf."""
    worst = 0.0
    for sa, sb in zip(a, b, strict=True):
        for x, y in zip(sa, sb, strict=True):
            scale = max(float(np.max(np.abs(y), initial=0.0)), 1e-300)
            # promote, never truncate: complex stays complex, float32 goes to float64
            wide = np.result_type(x, y, np.float64)
            err = float(np.max(np.abs(x.astype(wide) - y.astype(wide)), initial=0.0))
            worst = max(worst, err / scale)
    return worst
