"""L-BFGS, as ``torch.optim.LBFGS``: one ``update`` call is one ``step(closure)``, inside jit."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from optx import hyperparams as hp_lib
from optx import validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout, TorchTransformation
from optx.optimizers import lbfgs_state_dict
from optx.transformation import GradientTransformation

Array = jax.Array

# torch's _strong_wolfe defaults; LBFGS.step passes none of them except max_ls, so its own
# tolerance_change never reaches the line search (reference §5.11).
_C1 = 1e-4
_C2 = 0.9
_LS_TOLERANCE_CHANGE = 1e-9
# Curvature pairs with y·s at or below this are not stored (lbfgs.py, "if ys > 1e-10").
_YS_THRESHOLD = 1e-10


class LbfgsState(NamedTuple):
    """State of :func:`lbfgs`: torch's ``LBFGS.state[params[0]]`` as fixed-shape arrays.

    The vectors are over the parameters flattened with ``jax.flatten_util.ravel_pytree`` (leaves
    in pytree order, each row-major), which is torch's ``_gather_flat_grad`` order when the
    torch params are listed in the same order.

    Attributes:
      count: number of ``update`` calls (torch ``step`` calls) so far.
      hyperparams: ``{"lr": ...}``, the learning rate the next update uses.
      func_evals: torch's ``func_evals`` (total closure calls).
      n_iter: torch's ``n_iter`` (total inner iterations over all steps).
      d: torch's ``d``, the last search direction (zeros before the first iteration).
      t: torch's ``t``, the last step length (0 before the first iteration).
      old_dirs: torch's ``old_dirs`` (the ``y`` vectors) as a ring buffer of ``history_size`` rows.
      old_stps: torch's ``old_stps`` (the ``s`` vectors), same layout.
      ro: torch's ``ro`` (``1/y·s``), same layout.
      al: torch's ``al`` scratch of the two-loop recursion, same layout.
      H_diag: torch's ``H_diag``.
      prev_flat_grad: torch's ``prev_flat_grad``.
      prev_loss: torch's ``prev_loss``.
      history_start: ring-buffer row of torch's ``old_dirs[0]`` (the oldest pair).
      history_count: number of valid pairs, torch's ``len(old_dirs)``. Torch's list entry ``i``
        is row ``(history_start + i) % history_size``.
    """

    count: Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, Array]
    func_evals: Array
    n_iter: Array
    d: Array
    t: Array
    old_dirs: Array
    old_stps: Array
    ro: Array
    al: Array
    H_diag: Array
    prev_flat_grad: Array
    prev_loss: Array
    history_start: Array
    history_count: Array


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's ``_cubic_interpolate``: minimizer of the cubic through two points, clamped."""
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


def _strong_wolfe(obj_func, t, d, f, g, gtd, max_ls):
    """torch's ``_strong_wolfe`` (bracketing, then zoom), as two ``lax.while_loop``s.

    ``obj_func(t) -> (loss, flat_grad)`` evaluates at ``x + t·d``. Returns
    ``(f_new, g_new, t, ls_func_evals)``.
    """
    d_norm = jnp.max(jnp.abs(d))
    f_new, g_new = obj_func(t)
    gtd_new = jnp.dot(g_new, d)
    zero = jnp.zeros((), t.dtype)

    # Bracketing. status: 0 = keep going, 1 = two-point bracket [t_prev, t], 2 = done at t.
    def bracket_cond(c):
        return (c["status"] == 0) & (c["ls_iter"] < max_ls)

    def bracket_body(c):
        t, f_new, gtd_new = c["t"], c["f_new"], c["gtd_new"]
        armijo_fails = (f_new > (f + _C1 * t * gtd)) | ((c["ls_iter"] > 1) & (f_new >= c["f_prev"]))
        wolfe = jnp.abs(gtd_new) <= -_C2 * gtd
        status = jnp.where(armijo_fails, 1, jnp.where(wolfe, 2, jnp.where(gtd_new >= 0, 1, 0)))
        status = status.astype(jnp.int32)

        def extrapolate(c):
            t = c["t"]
            min_step = t + 0.01 * (t - c["t_prev"])
            max_step = t * 10
            t_next = _cubic_interpolate(
                c["t_prev"],
                c["f_prev"],
                c["gtd_prev"],
                t,
                c["f_new"],
                c["gtd_new"],
                bounds=(min_step, max_step),
            )
            f_next, g_next = obj_func(t_next)
            return dict(
                c,
                t=t_next,
                t_prev=t,
                f_prev=c["f_new"],
                g_prev=c["g_new"],
                gtd_prev=c["gtd_new"],
                f_new=f_next,
                g_new=g_next,
                gtd_new=jnp.dot(g_next, d),
                evals=c["evals"] + 1,
                ls_iter=c["ls_iter"] + 1,
            )

        c = dict(c, status=status)
        return lax.cond(status == 0, extrapolate, lambda c: c, c)

    c = lax.while_loop(
        bracket_cond,
        bracket_body,
        dict(
            t=t,
            t_prev=zero,
            f_prev=f,
            g_prev=g,
            gtd_prev=gtd,
            f_new=f_new,
            g_new=g_new,
            gtd_new=gtd_new,
            evals=jnp.ones((), jnp.int32),
            ls_iter=jnp.zeros((), jnp.int32),
            status=jnp.zeros((), jnp.int32),
        ),
    )
    t, status = c["t"], c["status"]
    # Out of iterations (status 0): torch's bracket is [0, t] from the initial point.
    # Done (status 2): a one-point bracket, stored as two equal points so low_pos is 0.
    ran_out = status == 0
    done = status == 2
    b_lo = jnp.where(ran_out, zero, jnp.where(done, t, c["t_prev"]))
    f_lo = jnp.where(ran_out, f, jnp.where(done, c["f_new"], c["f_prev"]))
    g_lo = jnp.where(ran_out, g, jnp.where(done, c["g_new"], c["g_prev"]))
    gtd_lo = jnp.where(ran_out, gtd, jnp.where(done, c["gtd_new"], c["gtd_prev"]))
    bracket = jnp.stack([b_lo, t])
    bracket_f = jnp.stack([f_lo, c["f_new"]])
    bracket_g = jnp.stack([g_lo, c["g_new"]])
    bracket_gtd = jnp.stack([gtd_lo, c["gtd_new"]])
    low_pos = jnp.where(bracket_f[0] <= bracket_f[1], 0, 1)

    # Zoom.
    def zoom_cond(z):
        b = z["bracket"]
        small = jnp.abs(b[1] - b[0]) * d_norm < _LS_TOLERANCE_CHANGE
        return ~z["done"] & (z["ls_iter"] < max_ls) & ~small

    def zoom_body(z):
        b, bf, bg, bgtd = z["bracket"], z["bracket_f"], z["bracket_g"], z["bracket_gtd"]
        low, high = z["low_pos"], 1 - z["low_pos"]
        t = _cubic_interpolate(b[0], bf[0], bgtd[0], b[1], bf[1], bgtd[1])
        b_max, b_min = jnp.max(b), jnp.min(b)
        eps = 0.1 * (b_max - b_min)
        near = jnp.minimum(b_max - t, t - b_min) < eps
        move = near & (z["insuf_progress"] | (t >= b_max) | (t <= b_min))
        moved_t = jnp.where(jnp.abs(t - b_max) < jnp.abs(t - b_min), b_max - eps, b_min + eps)
        t = jnp.where(move, moved_t, t)
        insuf_progress = near & ~move

        f_new, g_new = obj_func(t)
        gtd_new = jnp.dot(g_new, d)

        replace_high = (f_new > (f + _C1 * t * gtd)) | (f_new >= bf[low])
        wolfe = jnp.abs(gtd_new) <= -_C2 * gtd
        high_to_low = ~wolfe & (gtd_new * (b[high] - b[low]) >= 0)

        # Armijo fails or not lower than the lowest point: the new point replaces high.
        def set_at(arrs, i, vals):
            return tuple(a.at[i].set(v) for a, v in zip(arrs, vals))

        hb, hf, hg, hgtd = set_at((b, bf, bg, bgtd), high, (t, f_new, g_new, gtd_new))
        h_low = jnp.where(hf[0] <= hf[1], 0, 1)
        # Otherwise: maybe old high := old low, then the new point becomes low.
        lb, lf, lg, lgtd = lax.cond(
            high_to_low,
            lambda: set_at((b, bf, bg, bgtd), high, (b[low], bf[low], bg[low], bgtd[low])),
            lambda: (b, bf, bg, bgtd),
        )
        lb, lf, lg, lgtd = set_at((lb, lf, lg, lgtd), low, (t, f_new, g_new, gtd_new))

        def pick(x, y):
            return jnp.where(replace_high, x, y)

        return dict(
            bracket=pick(hb, lb),
            bracket_f=pick(hf, lf),
            bracket_g=pick(hg, lg),
            bracket_gtd=pick(hgtd, lgtd),
            low_pos=pick(h_low, low),
            insuf_progress=insuf_progress,
            done=~replace_high & wolfe,
            ls_iter=z["ls_iter"] + 1,
            evals=z["evals"] + 1,
        )

    z = lax.while_loop(
        zoom_cond,
        zoom_body,
        dict(
            bracket=bracket,
            bracket_f=bracket_f,
            bracket_g=bracket_g,
            bracket_gtd=bracket_gtd,
            low_pos=low_pos,
            insuf_progress=jnp.zeros((), bool),
            done=done,
            ls_iter=c["ls_iter"],
            evals=c["evals"],
        ),
    )
    low = z["low_pos"]
    return z["bracket_f"][low], z["bracket_g"][low], z["bracket"][low], z["evals"]


def lbfgs(
    lr: Hyperparam = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> GradientTransformation:
    r"""L-BFGS, exactly as ``torch.optim.LBFGS``; one ``update`` is one ``step(closure)``.

    ``update(grads, state, params, *, value, value_fn)``: ``value`` and ``grads`` are the loss and
    its gradient at ``params`` (torch's first closure call); ``value_fn(params) -> scalar loss`` is
    the closure, differentiated with ``jax.value_and_grad`` for every re-evaluation. The whole step
    (inner iterations, line search) runs in ``lax.while_loop``\s, so it jits once.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, f \text{ (closure)}, \textit{max\_iter},
         \textit{max\_eval}, \tau_g \text{ (tolerance\_grad)}, \tau_c \text{ (tolerance\_change)},
         m \text{ (history\_size)} \\
       &\textbf{step}: \; g \leftarrow \nabla f(\theta); \;
         \textbf{if } \max|g| \le \tau_g: \textbf{return} \\
       &\textbf{for } k = 1 \ldots \textit{max\_iter}: \\
       &\quad \textbf{if} \text{ first iteration ever}: \; d \leftarrow -g, \; H \leftarrow 1 \\
       &\quad \textbf{else}: \; y \leftarrow g - g_{prev}, \; s \leftarrow t d; \;
         \textbf{if } y^\top s > 10^{-10}: \text{push } (y, s, \rho = 1/y^\top s)
         \text{ (keep the last } m), \; H \leftarrow y^\top s / y^\top y \\
       &\quad\quad q \leftarrow -g; \; \textbf{for } i \text{ newest} \to \text{oldest}: \;
         \alpha_i \leftarrow \rho_i s_i^\top q, \; q \leftarrow q - \alpha_i y_i \\
       &\quad\quad d \leftarrow H q; \; \textbf{for } i \text{ oldest} \to \text{newest}: \;
         \beta \leftarrow \rho_i y_i^\top d, \; d \leftarrow d + (\alpha_i - \beta) s_i \\
       &\quad g_{prev} \leftarrow g, \; f_{prev} \leftarrow f; \;
         t \leftarrow \min(1, 1/\|g\|_1)\gamma \text{ on the first iteration ever, else } \gamma \\
       &\quad \textbf{if } g^\top d > -\tau_c: \textbf{break}
         \text{ (this } d, t \text{ are kept in the state, never applied)} \\
       &\quad \textbf{if} \text{ strong\_wolfe}: \; (f, g, t) \leftarrow
         \text{line search from } t \text{ (at most } \textit{max\_eval} - \text{evals)}; \;
         \theta \leftarrow \theta + t d \\
       &\quad \textbf{else}: \; \theta \leftarrow \theta + t d; \;
         \textbf{if } k < \textit{max\_iter}: (f, g) \leftarrow (f(\theta), \nabla f(\theta)) \\
       &\quad \textbf{break if } k = \textit{max\_iter}, \text{ evals} \ge \textit{max\_eval},
         \max|g| \le \tau_g, \max|t d| \le \tau_c \text{ or } |f - f_{prev}| < \tau_c
       \end{aligned}

    ``max_eval`` defaults to ``max_iter * 5 // 4``. The line search is torch's ``_strong_wolfe``
    (c1=1e-4, c2=0.9, 25 iterations at most, its own tolerance_change fixed at 1e-9, as torch
    never passes ``tolerance_change`` to it) with ``_cubic_interpolate``.

    State (:class:`LbfgsState`): torch's ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro``, ``al``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, with the history
    in fixed-size ring buffers of ``history_size`` rows. Parameters are flattened with
    ``ravel_pytree``; complex parameters are not supported.

    Under ``pmap``/``shard_map``, wrap the per-device loss with
    :func:`optx.sharding.mean_across` (``value_fn=optx.sharding.mean_across(loss, "batch")``) and
    pass gradients averaged over the same axis: it averages the value *and* its gradient, so
    every device takes the same decisions and keeps identical parameters. A bare ``lax.pmean`` of
    the loss is not enough: its gradient with respect to per-device params is the local one, and
    the replicas drift apart inside the line search. Under sharded ``jit`` nothing is needed.
    """
    validation.check_lr(lr)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    if line_search_fn not in (None, "strong_wolfe"):
        # torch raises this lazily, at the first step; raising at construction is kinder.
        raise RuntimeError("only 'strong_wolfe' is supported")
    spec = validation.scalar_hyperparams({"lr": lr})

    def init(params: Any) -> LbfgsState:
        validation.check_params(params, who="optx.lbfgs")
        flat, _ = ravel_pytree(params)
        if jnp.issubdtype(flat.dtype, jnp.complexfloating):
            raise TypeError("optx.lbfgs does not support complex parameters")
        n, dt = flat.shape[0], flat.dtype
        zeros = jnp.zeros((n,), dt)
        scalar0 = jnp.zeros((), dt)
        i0 = jnp.zeros((), jnp.int32)
        return LbfgsState(
            count=i0,
            hyperparams=hp_lib.evaluate(spec, 0),
            func_evals=i0,
            n_iter=i0,
            d=zeros,
            t=scalar0,
            old_dirs=jnp.zeros((history_size, n), dt),
            old_stps=jnp.zeros((history_size, n), dt),
            ro=jnp.zeros((history_size,), dt),
            al=jnp.zeros((history_size,), dt),
            H_diag=jnp.ones((), dt),
            prev_flat_grad=zeros,
            prev_loss=scalar0,
            history_start=i0,
            history_count=i0,
        )

    def update(
        grads: Any,
        state: LbfgsState,
        params: Any = None,
        *,
        value: Any = None,
        value_fn: Callable[[Any], Any] | None = None,
        **extra_args: Any,
    ) -> tuple[Any, LbfgsState]:
        del extra_args
        if params is None or value is None or value_fn is None:
            raise ValueError(
                "optx.lbfgs.update needs params, value and value_fn (the closure): "
                "update(grads, state, params, value=loss, value_fn=loss_fn)"
            )
        validation.check_matching(grads, params, who="optx.lbfgs")
        x0, unravel = ravel_pytree(params)
        g0, _ = ravel_pytree(grads)
        dt = x0.dtype
        g0 = g0.astype(dt)
        # Losses are compared as torch compares Python floats; keep them in one dtype.
        loss_dtype = jnp.result_type(value, dt)
        loss0 = jnp.asarray(value, loss_dtype)
        lr_ = state.hyperparams["lr"].astype(dt)
        value_and_grad = jax.value_and_grad(value_fn)

        def evaluate(x):
            f, gr = value_and_grad(unravel(x))
            return jnp.asarray(f, loss_dtype), ravel_pytree(gr)[0].astype(dt)

        def row(i, start):
            return (start + i) % history_size

        def direction(c):
            """The two-loop recursion after pushing (y, s) into the history."""
            g = c["g"]
            y = g - c["prev_g"]
            s = c["d"] * c["t"]
            ys = jnp.dot(y, s)
            push = ys > _YS_THRESHOLD
            start, count = c["start"], c["count"]
            full = count == history_size
            slot = jnp.where(full, start, row(count, start))
            old_dirs = jnp.where(push, c["old_dirs"].at[slot].set(y), c["old_dirs"])
            old_stps = jnp.where(push, c["old_stps"].at[slot].set(s), c["old_stps"])
            ro = jnp.where(push, c["ro"].at[slot].set(1.0 / ys), c["ro"])
            start = jnp.where(push & full, row(1, start), start)
            count = jnp.where(push & ~full, count + 1, count)
            H_diag = jnp.where(push, ys / jnp.dot(y, y), c["H_diag"])

            def first_loop(k, carry):
                q, al = carry
                j = row(count - 1 - k, start)  # newest to oldest
                a = jnp.dot(old_stps[j], q) * ro[j]
                return q - a * old_dirs[j], al.at[j].set(a)

            q, al = lax.fori_loop(0, count, first_loop, (-g, c["al"]))
            r = q * H_diag

            def second_loop(k, r):
                j = row(k, start)  # oldest to newest
                be_i = jnp.dot(old_dirs[j], r) * ro[j]
                return r + (al[j] - be_i) * old_stps[j]

            r = lax.fori_loop(0, count, second_loop, r)
            return dict(
                c,
                d=r,
                old_dirs=old_dirs,
                old_stps=old_stps,
                ro=ro,
                al=al,
                H_diag=H_diag,
                start=start,
                count=count,
            )

        def first_direction(c):
            return dict(
                c,
                d=-c["g"],
                start=jnp.zeros_like(c["start"]),
                count=jnp.zeros_like(c["count"]),
                H_diag=jnp.ones_like(c["H_diag"]),
            )

        def cond(c):
            return ~c["stop"]

        def body(c):
            c = dict(c, k=c["k"] + 1, n_iter=c["n_iter"] + 1)
            first = c["n_iter"] == 1
            c = lax.cond(first, first_direction, direction, c)
            g, d = c["g"], c["d"]
            c["prev_g"] = g
            c["prev_loss"] = c["loss"]
            t = jnp.where(first, jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(g))) * lr_, lr_)
            c["t"] = t
            gtd = jnp.dot(g, d)
            gtd_break = gtd > -tolerance_change

            def move(c):
                x = c["x"]
                if line_search_fn == "strong_wolfe":
                    max_ls = max_eval - c["evals"]
                    loss, g, t, ls_evals = _strong_wolfe(
                        lambda t: evaluate(x + t * d), c["t"], d, c["loss"], c["g"], gtd, max_ls
                    )
                    x = x + t * d
                else:
                    t = c["t"]
                    x = x + t * d
                    at_last = c["k"] == max_iter

                    def reevaluate(_):
                        loss, g = evaluate(x)
                        return loss, g, jnp.ones((), jnp.int32)

                    loss, g, ls_evals = lax.cond(
                        at_last,
                        lambda _: (c["loss"], c["g"], jnp.zeros((), jnp.int32)),
                        reevaluate,
                        None,
                    )
                opt_cond = jnp.max(jnp.abs(g)) <= tolerance_grad
                # Without a line search at the last iteration torch does not re-evaluate and
                # keeps the previous opt_cond; the loop ends there anyway.
                evals = c["evals"] + ls_evals
                stop = (
                    (c["k"] == max_iter)
                    | (evals >= max_eval)
                    | opt_cond
                    | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
                    | (jnp.abs(loss - c["prev_loss"]) < tolerance_change)
                )
                return dict(
                    c,
                    x=x,
                    loss=loss,
                    g=g,
                    t=t,
                    evals=evals,
                    func_evals=c["func_evals"] + ls_evals,
                    stop=stop,
                )

            return lax.cond(gtd_break, lambda c: dict(c, stop=jnp.ones((), bool)), move, c)

        opt_cond0 = jnp.max(jnp.abs(g0)) <= tolerance_grad
        carry = dict(
            x=x0,
            g=g0,
            loss=loss0,
            k=jnp.zeros((), jnp.int32),
            evals=jnp.ones((), jnp.int32),
            func_evals=state.func_evals + 1,
            n_iter=state.n_iter,
            d=state.d,
            t=state.t,
            old_dirs=state.old_dirs,
            old_stps=state.old_stps,
            ro=state.ro,
            al=state.al,
            H_diag=state.H_diag,
            prev_g=state.prev_flat_grad,
            prev_loss=state.prev_loss.astype(loss_dtype),
            start=state.history_start,
            count=state.history_count,
            stop=opt_cond0 | (max_iter <= 0),
        )
        c = lax.while_loop(cond, body, carry)
        new_count = state.count + 1
        new_state = LbfgsState(
            count=new_count,
            hyperparams=hp_lib.advance(spec, state.hyperparams, new_count),
            func_evals=c["func_evals"],
            n_iter=c["n_iter"],
            d=c["d"],
            t=c["t"],
            old_dirs=c["old_dirs"],
            old_stps=c["old_stps"],
            ro=c["ro"],
            al=c["al"],
            H_diag=c["H_diag"],
            prev_flat_grad=c["prev_g"],
            prev_loss=c["prev_loss"].astype(state.prev_loss.dtype),
            history_start=c["start"],
            history_count=c["count"],
        )
        updates = unravel(c["x"] - x0)
        return updates, new_state

    # torch keeps one state for all parameters (its own state_dict layout) and one param group.
    layout = TorchLayout("LBFGS", has_step=False, supports_param_groups=False,
                         export_state=lbfgs_state_dict.export_state,
                         import_state=lbfgs_state_dict.import_state)
    # Keyword-only value/value_fn narrow the protocol's **extra_args; optax's does the same.
    return TorchTransformation(init, update, layout)  # type: ignore[arg-type]
