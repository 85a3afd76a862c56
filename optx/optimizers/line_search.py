"""torch's strong-Wolfe line search (``torch.optim.lbfgs._strong_wolfe``), traceable under jit.

Torch's version is Python control flow over tensors and floats; here the bracketing phase and
the zoom phase are each one ``lax.while_loop`` and every branch is a ``jnp.where`` or
``lax.cond``, so one trace serves every call. The arithmetic is torch's, operation by
operation, so float64 results agree with torch's to rounding.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# A closure over the search start x and direction d: t -> (loss, flat gradient) at x + t·d.
ObjFunc = Callable[[Array], tuple[Array, Array]]

# The bracketing phase's outcome (torch breaks out of its loop with one of these).
_SEARCHING = 0  # no bracket yet: extrapolate further (or ran out of iterations)
_BRACKETED = 1  # [t_prev, t] brackets a point satisfying the strong Wolfe conditions
_WOLFE = 2  # t itself satisfies them: no zoom


class Point(NamedTuple):
    """A trial step ``t`` with the loss ``f``, flat gradient ``g`` and ``g·d`` there.

    In the zoom phase each field holds the two bracket ends stacked on a leading axis.
    """

    t: Array
    f: Array
    g: Array
    gtd: Array


class _Bracketing(NamedTuple):
    """Carry of the bracketing loop: the newest point and the one before it."""

    new: Point
    prev: Point
    evals: Array
    ls_iter: Array
    status: Array


class _Zoom(NamedTuple):
    """Carry of the zoom loop: torch's ``bracket*`` lists as a stacked :class:`Point`."""

    bracket: Point
    low_pos: Array
    insuf_progress: Array
    done: Array
    ls_iter: Array
    evals: Array


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's ``_cubic_interpolate``: minimizer of the cubic through two points, clamped.

    The cubic matches values ``f1, f2`` and derivatives ``g1, g2`` at ``x1, x2``; its minimizer
    is clamped to ``bounds`` (default: the interval between the points), and where the cubic
    has none (negative discriminant) the midpoint of the bounds is returned.
    """
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound = jnp.where(x1 <= x2, x1, x2)
        xmax_bound = jnp.where(x1 <= x2, x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    # sqrt of a clamped value so the untaken branch does not produce NaNs in jnp.where.
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0))
    min_pos = jnp.where(
        x1 <= x2,
        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)),
    )
    clamped = jnp.minimum(jnp.maximum(min_pos, xmin_bound), xmax_bound)
    return jnp.where(d2_square >= 0, clamped, (xmin_bound + xmax_bound) / 2.0)


def _evaluate(obj_func: ObjFunc, t: Array, d: Array) -> Point:
    f, g = obj_func(t)
    return Point(t, f, g, jnp.dot(g, d))


def _bracket(obj_func, d, start, first, max_ls, c1, c2) -> _Bracketing:
    """torch's first loop: extrapolate until a bracket or a strong-Wolfe point is found."""
    f, gtd = start.f, start.gtd

    def cond(c):
        return (c.status == _SEARCHING) & (c.ls_iter < max_ls)

    def body(c):
        new, prev = c.new, c.prev
        armijo_fails = (new.f > (f + c1 * new.t * gtd)) | ((c.ls_iter > 1) & (new.f >= prev.f))
        wolfe = jnp.abs(new.gtd) <= -c2 * gtd
        status = jnp.where(
            armijo_fails,
            _BRACKETED,
            jnp.where(wolfe, _WOLFE, jnp.where(new.gtd >= 0, _BRACKETED, _SEARCHING)),
        ).astype(jnp.int32)

        def extrapolate(c):
            min_step = new.t + 0.01 * (new.t - prev.t)
            max_step = new.t * 10
            t = cubic_interpolate(
                prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd, bounds=(min_step, max_step)
            )
            return c._replace(
                new=_evaluate(obj_func, t, d), prev=new, evals=c.evals + 1, ls_iter=c.ls_iter + 1
            )

        c = c._replace(status=status)
        return lax.cond(status == _SEARCHING, extrapolate, lambda c: c, c)

    init = _Bracketing(
        new=first,
        prev=start._replace(t=jnp.zeros_like(start.t)),
        evals=jnp.ones((), jnp.int32),
        ls_iter=jnp.zeros((), jnp.int32),
        status=jnp.zeros((), jnp.int32),
    )
    return lax.while_loop(cond, body, init)


def _zoom(obj_func, d, start, z: _Zoom, max_ls, c1, c2, tolerance_change) -> _Zoom:
    """torch's second loop: shrink the bracket until a strong-Wolfe point is found."""
    f, gtd = start.f, start.gtd
    d_norm = jnp.max(jnp.abs(d))

    def cond(z):
        small = jnp.abs(z.bracket.t[1] - z.bracket.t[0]) * d_norm < tolerance_change
        return ~z.done & (z.ls_iter < max_ls) & ~small

    def body(z):
        b = z.bracket
        low, high = z.low_pos, 1 - z.low_pos
        t = cubic_interpolate(b.t[0], b.f[0], b.gtd[0], b.t[1], b.f[1], b.gtd[1])
        # Too close to an end of the bracket: move 10% of its length away from that end if the
        # previous trial was too close as well or t is on (or past) the end.
        b_max, b_min = jnp.max(b.t), jnp.min(b.t)
        eps = 0.1 * (b_max - b_min)
        near = jnp.minimum(b_max - t, t - b_min) < eps
        move = near & (z.insuf_progress | (t >= b_max) | (t <= b_min))
        moved_t = jnp.where(jnp.abs(t - b_max) < jnp.abs(t - b_min), b_max - eps, b_min + eps)
        t = jnp.where(move, moved_t, t)
        new = _evaluate(obj_func, t, d)

        def set_at(bracket: Point, i, point: Point) -> Point:
            return Point(*(a.at[i].set(v) for a, v in zip(bracket, point)))

        # Armijo fails or not lower than the lowest point: the new point replaces high.
        replace_high = (new.f > (f + c1 * t * gtd)) | (new.f >= b.f[low])
        by_high = set_at(b, high, new)
        # Otherwise it becomes low; if the slope there points away from high, old low first
        # becomes high. A strong-Wolfe point ends the search.
        wolfe = jnp.abs(new.gtd) <= -c2 * gtd
        high_to_low = ~wolfe & (new.gtd * (b.t[high] - b.t[low]) >= 0)
        by_low = lax.cond(
            high_to_low, lambda: set_at(b, high, jax.tree.map(lambda a: a[low], b)), lambda: b
        )
        by_low = set_at(by_low, low, new)

        def pick(x, y):
            return jnp.where(replace_high, x, y)

        return _Zoom(
            bracket=jax.tree.map(pick, by_high, by_low),
            low_pos=pick(jnp.where(by_high.f[0] <= by_high.f[1], 0, 1), low),
            insuf_progress=near & ~move,
            done=~replace_high & wolfe,
            ls_iter=z.ls_iter + 1,
            evals=z.evals + 1,
        )

    return lax.while_loop(cond, body, z)


def strong_wolfe(
    obj_func: ObjFunc,
    t: Array,
    d: Array,
    f: Array,
    g: Array,
    gtd: Array,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int | Array = 25,
) -> tuple[Array, Array, Array, Array]:
    """torch's ``_strong_wolfe``: a step length along ``d`` satisfying the strong Wolfe conditions.

    Bracketing extrapolates from ``t`` (cubic interpolation bounded to ``[t + 0.01 (t - t_prev),
    10 t]``) until the loss rises, the slope turns non-negative, or ``t`` satisfies both
    conditions; zoom then shrinks the bracket by cubic interpolation, kept 10% of the bracket away
    from its ends when progress stalls. At most ``max_ls`` evaluations after the first.

    Args:
      obj_func: ``t -> (loss, flat_grad)`` at ``x + t·d`` (torch's ``obj_func(x, t, d)`` with
        ``x`` and ``d`` closed over).
      t: the initial step length.
      d: the search direction (flat).
      f: the loss at ``x``.
      g: the flat gradient at ``x``.
      gtd: ``g·d``, the directional derivative at ``x`` (negative for a descent direction).
      c1: the sufficient-decrease (Armijo) constant.
      c2: the curvature constant.
      tolerance_change: the zoom stops once the bracket times ``max|d|`` is below this.
      max_ls: the maximum number of line-search iterations (a traced integer is fine).

    Returns:
      ``(f_new, g_new, t, ls_func_evals)``: the loss, flat gradient and step length at the
      accepted point and the number of ``obj_func`` calls, as torch returns them.
    """
    start = Point(t, f, g, gtd)
    c = _bracket(obj_func, d, start, _evaluate(obj_func, t, d), max_ls, c1, c2)
    new, prev = c.new, c.prev
    # Out of iterations (still searching): torch's bracket is [0, t] from the initial point.
    # A strong-Wolfe point: a one-point bracket, stored as two equal points so low_pos is 0.
    ran_out = c.status == _SEARCHING
    done = c.status == _WOLFE

    def lower_end(at_start, at_new, at_prev):
        return jnp.where(ran_out, at_start, jnp.where(done, at_new, at_prev))

    lower = Point(*map(lower_end, start._replace(t=jnp.zeros_like(t)), new, prev))
    bracket = jax.tree.map(lambda lo, hi: jnp.stack([lo, hi]), lower, new)
    z = _Zoom(
        bracket=bracket,
        low_pos=jnp.where(bracket.f[0] <= bracket.f[1], 0, 1),
        insuf_progress=jnp.zeros((), bool),
        done=done,
        ls_iter=c.ls_iter,
        evals=c.evals,
    )
    z = _zoom(obj_func, d, start, z, max_ls, c1, c2, tolerance_change)
    low = z.low_pos
    return z.bracket.f[low], z.bracket.g[low], z.bracket.t[low], z.evals
