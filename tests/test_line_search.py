"""optx's strong-Wolfe line search against torch's own ``_strong_wolfe`` and ``_cubic_interpolate``
(``torch.optim.lbfgs``), called directly on small float64 problems: the same trial steps, the
same returned step, loss, gradient and number of evaluations."""

from __future__ import annotations

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.lbfgs as torch_lbfgs

import optx.optimizers.lbfgs
from optx.optimizers.line_search import cubic_interpolate, strong_wolfe

torch.set_default_dtype(torch.float64)

SCALES = np.array([1.0, 4.0, 0.25, 9.0])
SHIFT = np.linspace(-1.0, 1.0, 4)


def rosenbrock(x, xp):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def quadratic(x, xp):
    scales = xp.asarray(SCALES) if xp is jnp else torch.from_numpy(SCALES)
    return 0.5 * xp.sum(scales * x**2)


def cosines(x, xp):
    shift = xp.asarray(SHIFT) if xp is jnp else torch.from_numpy(SHIFT)
    return xp.sum(xp.cos(3.0 * x + shift)) + 0.1 * xp.sum(x**2)


ROSEN_X0 = np.array([-1.2, 1.0, -0.5, 0.8])
QUAD_X0 = np.array([1.0, -1.0, 2.0, 0.5])
COS_X0 = np.array([0.3, -0.2, 0.9, 0.1])

# (problem, x0, t, keyword arguments, the phases torch goes through).
CASES = {
    "rosenbrock-armijo-fails-then-zoom": (rosenbrock, ROSEN_X0, 1.0, {}, {"zoom"}),
    "rosenbrock-tiny-step-extrapolates": (rosenbrock, ROSEN_X0, 1e-5, {}, {"extrapolate"}),
    "rosenbrock-extrapolate-then-zoom": (
        rosenbrock, ROSEN_X0, 1e-3, dict(c2=0.1), {"extrapolate", "zoom"}),
    "quadratic-wolfe-at-once": (quadratic, QUAD_X0, 0.2, {}, set()),
    "quadratic-strict-curvature": (quadratic, QUAD_X0, 1.0, dict(c2=0.01), {"zoom"}),
    "quadratic-short-step-extrapolates": (quadratic, QUAD_X0, 1e-3, {}, {"extrapolate"}),
    "cosines-zoom": (cosines, COS_X0, 3.0, dict(c2=0.2), {"zoom"}),
    "cosines-strict-curvature-extrapolates": (cosines, COS_X0, 0.01, dict(c2=0.05),
                                              {"extrapolate"}),
    "cosines-strict-armijo-moves-off-bracket-ends": (
        cosines, COS_X0, 1.0, dict(c1=0.4), {"zoom", "moved"}),
    "cosines-strict-curvature-moves-off-bracket-ends": (
        cosines, COS_X0, 10.0, dict(c2=0.01), {"zoom", "moved"}),
    "max-ls-0-ran-out": (rosenbrock, ROSEN_X0, 1.0, dict(max_ls=0), set()),
    "max-ls-2-ran-out-extrapolating": (quadratic, QUAD_X0, 1e-4, dict(max_ls=2),
                                       {"extrapolate"}),
    "max-ls-3-ran-out-zooming": (rosenbrock, ROSEN_X0, 1.0, dict(max_ls=3, c2=0.01), {"zoom"}),
    "large-tolerance-change-skips-zoom": (
        quadratic, QUAD_X0, 1.0, dict(c2=0.01, tolerance_change=10.0), set()),
}


def _torch_search(problem, x0, t, kwargs):
    """torch's ``_strong_wolfe`` from ``x0`` along ``-grad``; returns its result and the trial
    steps evaluated, and which phases it went through."""
    x = torch.tensor(x0)
    trials: list[float] = []
    phases: set[str] = set()

    def obj_func(x, t, d):
        trials.append(float(t))
        xt = (x + t * d).requires_grad_(True)
        loss = problem(xt, torch)
        (g,) = torch.autograd.grad(loss, xt)
        return loss.detach(), g

    real = torch_lbfgs._cubic_interpolate

    def recording(*args, bounds=None):
        phases.add("extrapolate" if bounds is not None else "zoom")
        out = real(*args, bounds=bounds)
        recording.last = float(out)
        return out

    recording.last = None
    f, g = obj_func(x, 0.0, torch.zeros_like(x))
    trials.clear()
    d = -g
    torch_lbfgs._cubic_interpolate = recording
    try:
        # obj_func is wrapped so a trial step that differs from the interpolated one shows up.
        def watched(x, t, d):
            if recording.last is not None and float(t) != recording.last:
                phases.add("moved")
            return obj_func(x, t, d)

        out = torch_lbfgs._strong_wolfe(watched, x, t, d, f, g, g.dot(d), **kwargs)
    finally:
        torch_lbfgs._cubic_interpolate = real
    return out, trials, phases


DEFAULTS = dict(c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25)


_TRIALS: list[float] = []


@functools.cache
def _jitted_search(problem):
    """optx's ``strong_wolfe`` from ``x0`` along ``-grad``, compiled once per problem (the step and
    the hyperparameters are traced). Each trial step is appended to ``_TRIALS``, in order."""

    def search(x0, t, kwargs):
        value_and_grad = jax.value_and_grad(lambda x: problem(x, jnp))
        f, g = value_and_grad(x0)
        d = -g

        def obj_func(t):
            jax.debug.callback(lambda t: _TRIALS.append(float(t)), t, ordered=True)
            return value_and_grad(x0 + t * d)

        return strong_wolfe(obj_func, t, d, f, g, jnp.dot(g, d), **kwargs)

    return jax.jit(search)


def _optx_search(problem, x0, t, kwargs):
    """Returns optx's result and the trial steps it evaluated."""
    kwargs = {k: jnp.asarray(v) for k, v in {**DEFAULTS, **kwargs}.items()}
    _TRIALS.clear()
    out = jax.block_until_ready(_jitted_search(problem)(jnp.asarray(x0), jnp.asarray(t), kwargs))
    jax.effects_barrier()
    return out, list(_TRIALS)


@pytest.mark.parametrize("case", list(CASES))
def test_strong_wolfe_matches_torch(case):
    problem, x0, t, kwargs, phases = CASES[case]
    (f, g, t_new, evals), torch_trials, torch_phases = _torch_search(problem, x0, t, kwargs)
    assert torch_phases == phases  # the case exercises what its name says
    (f2, g2, t2, evals2), trials = _optx_search(problem, x0, t, kwargs)
    assert int(evals2) == evals == len(torch_trials)
    assert float(t2) == pytest.approx(float(t_new), rel=1e-12, abs=1e-300)
    assert float(f2) == pytest.approx(float(f), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(np.asarray(g2), g.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(trials, torch_trials, rtol=1e-12)  # the same trial steps


CUBIC = {
    "x1-below-x2": (0.0, 1.0, -2.0, 1.0, 0.5, 1.0, None),
    "x1-above-x2": (2.0, 0.3, 1.5, 0.5, 0.8, -1.0, None),
    "no-real-minimizer-midpoint": (0.0, 0.0, 4.0, 1.0, 3.0, 4.0, None),
    "clamped-to-upper-bound": (0.0, 1.0, -1.0, 0.1, 0.9, -0.9, (0.101, 1.0)),
    "clamped-to-lower-bound": (0.0, 1.0, -3.0, 1.0, 0.0, 2.0, (0.9, 10.0)),
    "within-bounds": (0.0, 1.0, -2.0, 0.2, 0.7, -0.5, (0.202, 2.0)),
    "no-real-minimizer-bounds-midpoint": (0.0, 0.0, 4.0, 1.0, 3.0, 4.0, (1.01, 10.0)),
}


@pytest.mark.parametrize("case", list(CUBIC))
def test_cubic_interpolate_matches_torch(case):
    x1, f1, g1, x2, f2, g2, bounds = CUBIC[case]
    ft = [torch.tensor(v) for v in (f1, g1, f2, g2)]
    want = torch_lbfgs._cubic_interpolate(x1, ft[0], ft[1], x2, ft[2], ft[3], bounds=bounds)
    jb = None if bounds is None else tuple(jnp.asarray(b) for b in bounds)
    args = [jnp.asarray(v) for v in (x1, f1, g1, x2, f2, g2)]
    got = jax.jit(lambda *a: cubic_interpolate(*a, bounds=jb))(*args)
    assert float(got) == pytest.approx(float(want), rel=1e-14, abs=1e-300)


def test_lbfgs_docstring_example_runs():
    """The example in ``optx.lbfgs``'s docstring runs and prints what it shows."""
    finder = doctest.DocTestFinder()
    (test,) = finder.find(optx.optimizers.lbfgs.lbfgs, "lbfgs", globs={})
    result = doctest.DocTestRunner().run(test)
    assert result.attempted > 0 and result.failed == 0
