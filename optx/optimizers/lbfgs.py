"""L-BFGS, as ``torch.optim.LBFGS``: one ``update`` call is one ``step(closure)``, inside jit."""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from optx import hyperparams as hp_lib
from optx import validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout, TorchTransformation
from optx.optimizers import lbfgs_state_dict
from optx.optimizers.line_search import strong_wolfe
from optx.state import Hyperparams, increment
from optx.transformation import GradientTransformation

Array = jax.Array

# Curvature pairs with y·s at or below this are not stored (torch: "if ys > 1e-10").
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
    hyperparams: Mapping[str, Array]
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


class _Carry(NamedTuple):
    """Carry of the inner-iteration loop: torch's locals in ``LBFGS.step``, and its state.

    Attributes:
      x: the flat parameters.
      g: torch's ``flat_grad``, the gradient at ``x``.
      loss: torch's ``loss``, the loss at ``x`` (in the loss dtype).
      k: torch's local ``n_iter``, the iterations of this step.
      evals: torch's ``current_evals``, the closure calls of this step.
      stop: whether the loop ends.
      state: torch's ``state`` as it updates it (``prev_loss`` in the loss dtype).
    """

    x: Array
    g: Array
    loss: Array
    k: Array
    evals: Array
    stop: Array
    state: LbfgsState


def _first_direction(state: LbfgsState, g: Array) -> LbfgsState:
    """The first iteration ever: steepest descent, an empty history and ``H_diag = 1``."""
    return state._replace(
        d=-g,
        history_start=jnp.zeros_like(state.history_start),
        history_count=jnp.zeros_like(state.history_count),
        H_diag=jnp.ones_like(state.H_diag),
    )


def _direction(state: LbfgsState, g: Array) -> LbfgsState:
    """Pushes the last curvature pair ``(y, s)`` into the history, then the two-loop recursion."""
    history_size = state.ro.shape[0]

    def row(i, start):
        return (start + i) % history_size

    y = g - state.prev_flat_grad
    s = state.d * state.t
    ys = jnp.dot(y, s)
    push = ys > _YS_THRESHOLD
    start, count = state.history_start, state.history_count
    full = count == history_size
    slot = jnp.where(full, start, row(count, start))  # full: overwrite the oldest pair
    old_dirs = jnp.where(push, state.old_dirs.at[slot].set(y), state.old_dirs)
    old_stps = jnp.where(push, state.old_stps.at[slot].set(s), state.old_stps)
    ro = jnp.where(push, state.ro.at[slot].set(1.0 / ys), state.ro)
    start = jnp.where(push & full, row(1, start), start)
    count = jnp.where(push & ~full, count + 1, count)
    H_diag = jnp.where(push, ys / jnp.dot(y, y), state.H_diag)

    def first_loop(k, carry):
        q, al = carry
        j = row(count - 1 - k, start)  # newest to oldest
        a = jnp.dot(old_stps[j], q) * ro[j]
        return q - a * old_dirs[j], al.at[j].set(a)

    q, al = lax.fori_loop(0, count, first_loop, (-g, state.al))

    def second_loop(k, r):
        j = row(k, start)  # oldest to newest
        be_i = jnp.dot(old_dirs[j], r) * ro[j]
        return r + (al[j] - be_i) * old_stps[j]

    d = lax.fori_loop(0, count, second_loop, q * H_diag)
    return state._replace(
        d=d,
        old_dirs=old_dirs,
        old_stps=old_stps,
        ro=ro,
        al=al,
        H_diag=H_diag,
        history_start=start,
        history_count=count,
    )


def lbfgs(
    lr: Hyperparam = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
    *,
    maximize: bool = False,
) -> GradientTransformation:
    r"""L-BFGS, exactly as ``torch.optim.LBFGS``; one ``update`` is one ``step(closure)``.

    ``update(grads, state, params, *, value, value_fn)``: ``value`` and ``grads`` are the loss and
    its gradient at ``params`` (torch's first closure call); ``value_fn(params) -> scalar loss`` is
    the closure, differentiated with ``jax.value_and_grad`` for every re-evaluation. The whole step
    (inner iterations, line search) runs in ``lax.while_loop``\s, so it jits once.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, f \text{ (closure)}, \mathit{max\_iter},
         \mathit{max\_eval}, \\
       &\qquad \tau_g \text{ (}\mathit{tolerance\_grad}\text{)},
         \tau_c \text{ (}\mathit{tolerance\_change}\text{)},
         m \text{ (}\mathit{history\_size}\text{)} \\
       &\textbf{step}: \; g \leftarrow \nabla f(\theta); \;
         \textbf{if } \max|g| \le \tau_g: \textbf{return} \\
       &\textbf{for } k = 1 \ldots \mathit{max\_iter}: \\
       &\quad \textbf{if} \text{ first iteration ever}: \; d \leftarrow -g, \; H \leftarrow 1 \\
       &\quad \textbf{else}: \; y \leftarrow g - g_{prev}, \; s \leftarrow t d; \;
         \textbf{if } y^\top s > 10^{-10}: \\
       &\quad\quad \text{push } (y, s, \rho = 1/y^\top s)
         \text{ (keep the last } m), \; H \leftarrow y^\top s / y^\top y \\
       &\quad\quad q \leftarrow -g; \; \textbf{for } i \text{ newest} \to \text{oldest}: \;
         \alpha_i \leftarrow \rho_i s_i^\top q, \; q \leftarrow q - \alpha_i y_i \\
       &\quad\quad d \leftarrow H q; \; \textbf{for } i \text{ oldest} \to \text{newest}: \;
         \beta \leftarrow \rho_i y_i^\top d, \; d \leftarrow d + (\alpha_i - \beta) s_i \\
       &\quad g_{prev} \leftarrow g, \; f_{prev} \leftarrow f; \;
         t \leftarrow \min(1, 1/\|g\|_1)\gamma \text{ on the first iteration ever, else } \gamma \\
       &\quad \textbf{if } g^\top d > -\tau_c: \textbf{break}
         \text{ (this } d, t \text{ are kept in the state, never applied)} \\
       &\quad \textbf{if} \text{ }\mathit{strong\_wolfe}: \; (f, g, t) \leftarrow
         \text{line search from } t \text{ (at most } \mathit{max\_eval} - \text{evals)}, \\
       &\quad\quad \theta \leftarrow \theta + t d \\
       &\quad \textbf{else}: \; \theta \leftarrow \theta + t d; \;
         \textbf{if } k < \mathit{max\_iter}: (f, g) \leftarrow (f(\theta), \nabla f(\theta)) \\
       &\quad \textbf{break if } k = \mathit{max\_iter}, \text{ evals} \ge \mathit{max\_eval},
         \max|g| \le \tau_g, \\
       &\quad\quad \max|t d| \le \tau_c \text{ or } |f - f_{prev}| < \tau_c
       \end{aligned}

    With ``maximize=True`` (torch 2.14), the algorithm above runs on :math:`-f`: torch negates
    the flat gradient and every loss it reads (so ``prev_loss`` holds :math:`-f`), and returns
    the closure's own loss. With no parameters at all (an empty ``params``), ``update`` changes
    nothing, as torch 2.14's ``step`` returns ``closure()`` at once (torch 2.13 raised).

    The line search is :func:`optx.optimizers.line_search.strong_wolfe`, torch's
    ``_strong_wolfe`` with its defaults (c1=1e-4, c2=0.9, its own tolerance_change fixed at 1e-9:
    torch passes it only ``max_ls``, the evaluations left).

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

    Args:
      lr: the learning rate, a float or a schedule ``count -> lr`` (default 1).
      max_iter: the maximum number of iterations per ``update`` (torch ``step``).
      max_eval: the maximum number of closure evaluations per ``update`` (default
        ``max_iter * 5 // 4``).
      tolerance_grad: stop when ``max|g|`` is at most this (first-order optimality).
      tolerance_change: stop when the loss or the parameters change by less than this.
      history_size: the number of curvature pairs ``(y, s)`` kept.
      line_search_fn: ``None`` (a fixed step ``lr``) or ``"strong_wolfe"``.
      maximize: maximize the closure's value instead of minimizing it (keyword-only, as in
        torch 2.14).

    Returns:
      A :class:`~optx.GradientTransformation` whose ``update`` takes ``value`` and ``value_fn``.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import optx
      >>> def loss_fn(p):
      ...     return jnp.sum((p - jnp.array([1.0, -2.0])) ** 2) + jnp.sum(p**4)
      >>> tx = optx.lbfgs(line_search_fn="strong_wolfe")
      >>> params = jnp.zeros(2)
      >>> state = tx.init(params)
      >>> loss, grads = jax.value_and_grad(loss_fn)(params)
      >>> updates, state = tx.update(grads, state, params, value=loss, value_fn=loss_fn)
      >>> params = optx.apply_updates(params, updates)
      >>> print(params.round(4), int(state.func_evals))
      [ 0.5897 -0.8351] 7
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
        # A fresh buffer per slot, never one shared by several: a state that jit donates
        # (the optx.optim step does) must not hold the same buffer twice.
        def zeros() -> Array:
            return jnp.zeros((n,), dt)

        def scalar0() -> Array:
            return jnp.zeros((), dt)

        def i0() -> Array:
            return jnp.zeros((), jnp.int32)

        return LbfgsState(
            count=i0(),
            hyperparams=Hyperparams(hp_lib.evaluate(spec, 0), {}, "optx.lbfgs"),
            func_evals=i0(),
            n_iter=i0(),
            d=zeros(),
            t=scalar0(),
            old_dirs=jnp.zeros((history_size, n), dt),
            old_stps=jnp.zeros((history_size, n), dt),
            ro=jnp.zeros((history_size,), dt),
            al=jnp.zeros((history_size,), dt),
            H_diag=jnp.ones((), dt),
            prev_flat_grad=zeros(),
            prev_loss=scalar0(),
            history_start=i0(),
            history_count=i0(),
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
        if x0.size == 0:
            # torch 2.14: nothing to optimize, step returns closure() and leaves the state alone.
            return jax.tree_util.tree_map(jnp.zeros_like, params), state
        g0, _ = ravel_pytree(grads)
        dt = x0.dtype
        # maximize (torch 2.14): the flat gradient and every loss read are negated.
        sign: Callable[[Array], Array] = jnp.negative if maximize else (lambda v: v)
        g0 = sign(g0.astype(dt))
        # Losses are compared as torch compares Python floats; keep them in one dtype.
        loss_dtype = jnp.result_type(value, dt)
        loss0 = sign(jnp.asarray(value, loss_dtype))
        lr_ = state.hyperparams["lr"].astype(dt)
        value_and_grad = jax.value_and_grad(value_fn)

        def evaluate(x):
            f, gr = value_and_grad(unravel(x))
            return sign(jnp.asarray(f, loss_dtype)), sign(ravel_pytree(gr)[0].astype(dt))

        def move(c: _Carry, gtd: Array) -> _Carry:
            """Steps along ``d`` (line search or fixed step), then torch's stopping tests."""
            state, d = c.state, c.state.d
            if line_search_fn == "strong_wolfe":
                # torch passes only max_ls: c1, c2 and tolerance_change keep their defaults.
                loss, g, t, ls_evals = strong_wolfe(
                    lambda t: evaluate(c.x + t * d),
                    state.t,
                    d,
                    c.loss,
                    c.g,
                    gtd,
                    max_ls=max_eval - c.evals,
                )
                x = c.x + t * d
            else:
                t = state.t
                x = c.x + t * d
                # torch re-evaluates after every iteration but the last one, where it keeps
                # the previous loss, gradient and opt_cond; the loop ends there anyway.
                loss, g, ls_evals = lax.cond(
                    c.k == max_iter,
                    lambda: (c.loss, c.g, jnp.zeros((), jnp.int32)),
                    lambda: (*evaluate(x), jnp.ones((), jnp.int32)),
                )
            evals = c.evals + ls_evals
            stop = (
                (c.k == max_iter)
                | (evals >= max_eval)
                | (jnp.max(jnp.abs(g)) <= tolerance_grad)
                | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
                | (jnp.abs(loss - state.prev_loss) < tolerance_change)
            )
            state = state._replace(t=t, func_evals=state.func_evals + ls_evals)
            return c._replace(x=x, loss=loss, g=g, evals=evals, stop=stop, state=state)

        def body(c: _Carry) -> _Carry:
            state = c.state._replace(n_iter=c.state.n_iter + 1)
            first = state.n_iter == 1
            state = lax.cond(first, _first_direction, _direction, state, c.g)
            t = jnp.where(first, jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(c.g))) * lr_, lr_)
            state = state._replace(prev_flat_grad=c.g, prev_loss=c.loss, t=t)
            c = c._replace(k=c.k + 1, state=state)
            gtd = jnp.dot(c.g, state.d)
            # Not a descent direction: stop, keeping this d and t in the state, never applied.
            return lax.cond(
                gtd > -tolerance_change,
                lambda c: c._replace(stop=jnp.ones((), bool)),
                lambda c: move(c, gtd),
                c,
            )

        c = lax.while_loop(
            lambda c: ~c.stop,
            body,
            _Carry(
                x=x0,
                g=g0,
                loss=loss0,
                k=jnp.zeros((), jnp.int32),
                evals=jnp.ones((), jnp.int32),
                stop=(jnp.max(jnp.abs(g0)) <= tolerance_grad) | (max_iter <= 0),
                state=state._replace(
                    func_evals=state.func_evals + 1,
                    prev_loss=state.prev_loss.astype(loss_dtype),
                ),
            ),
        )
        new_count = increment(state.count)
        new_state = c.state._replace(
            count=new_count,
            hyperparams=Hyperparams(hp_lib.advance(spec, state.hyperparams, new_count), {},
                                    "optx.lbfgs"),
            prev_loss=c.state.prev_loss.astype(state.prev_loss.dtype),
        )
        updates = unravel(c.x - x0)
        return updates, new_state

    # torch keeps one state for all parameters (its own state_dict layout) and one param group.
    layout = TorchLayout("LBFGS", has_step=False, supports_param_groups=False,
                         export_state=lbfgs_state_dict.export_state,
                         import_state=lbfgs_state_dict.import_state)
    # Keyword-only value/value_fn narrow the protocol's **extra_args; optax's does the same.
    return TorchTransformation(init, update, layout)  # type: ignore[arg-type]
