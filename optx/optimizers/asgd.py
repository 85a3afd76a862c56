"""Averaged SGD, as ``torch.optim.ASGD``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx import torch_ops, validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam, float_dtype
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("ASGD", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def asgd(
    lr: Hyperparam = 1e-2,
    lambd: Hyperparam = 1e-4,
    alpha: Hyperparam = 0.75,
    t0: Hyperparam = 1e6,
    weight_decay: Hyperparam = 0,
    foreach: Any = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> GradientTransformation:
    r"""Averaged stochastic gradient descent, exactly as ``torch.optim.ASGD``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \lambda \text{ (decay)}, \alpha \text{ (power)},
         t_0 \text{ (averaging start)}, \lambda_{wd} \text{ (weight decay)}, \textit{maximize} \\
       &\eta_0 \leftarrow \gamma, \; \mu_0 \leftarrow 1, \; a_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda_{wd} \neq 0: \; g_t \leftarrow g_t + \lambda_{wd}\theta_{t-1} \\
       &\quad \theta_t \leftarrow \theta_{t-1}(1 - \lambda\eta_{t-1}) - \eta_{t-1} g_t \\
       &\quad \textbf{if } \mu_{t-1} \neq 1: \; a_t \leftarrow a_{t-1} + \mu_{t-1}(\theta_t -
          a_{t-1}) \quad \textbf{else}: \; a_t \leftarrow \theta_t \\
       &\quad \eta_t \leftarrow \gamma / (1 + \lambda\gamma t)^\alpha, \quad
          \mu_t \leftarrow 1 / \max(1, t - t_0)
       \end{aligned}

    ``a`` (``ax``) is the running average of the iterates, the model to evaluate; ``eta`` and
    ``mu`` are computed for the *next* step. State: ``ax`` per parameter; torch's per-parameter
    scalars ``eta`` and ``mu`` (equal for all parameters, kept in torch's scalar dtype: float32
    unless x64) are ``state.scalars``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      lambd: decay term of the step size; negative values raise ``ValueError`` (torch 2.15).
      alpha: power of the step size's decay; negative values raise ``ValueError`` (torch 2.15).
      t0: step at which averaging starts.
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.asgd(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.95 -1.95]
    """
    del foreach, differentiable, capturable
    validation.check_lr(lr)
    validation.check_weight_decay(weight_decay)
    # torch 2.15's checks (2.13 and 2.14 accept negative values).
    validation.check(lambd, lambda v: 0.0 <= v, f"Invalid lambd value: {lambd}")
    validation.check(alpha, lambda v: 0.0 <= v, f"Invalid alpha value: {alpha}")

    def init_slots(p):
        return {"ax": jnp.zeros_like(p)}

    def init_scalars(hp):
        dtype = float_dtype()
        # A copy: jnp.asarray would return hp["lr"] itself when the dtypes agree, and a state
        # holding one buffer twice cannot be donated to a jitted update.
        return {"eta": jnp.array(hp["lr"], dtype, copy=True), "mu": jnp.ones((), dtype)}

    def coefficients(hp, t, scalars):
        lr, lambd = hp["lr"], hp["lambd"]
        # torch creates eta from the group's lr when it creates the state, on the first step.
        eta = jnp.where(t == 1, lr.astype(scalars["eta"].dtype), scalars["eta"]).astype(lr.dtype)
        mu = scalars["mu"].astype(lr.dtype)
        c = {
            "eta": eta,
            "decay": 1 - lambd * eta,
            "mu": mu,
            "average": mu != 1,
            "weight_decay": hp["weight_decay"],
        }
        new_eta = lr / ((1 + lambd * lr * t) ** hp["alpha"])
        new_mu = 1 / jnp.maximum(1.0, t - hp["t0"])
        dtype = scalars["eta"].dtype
        return c, {"eta": new_eta.astype(dtype), "mu": new_mu.astype(dtype)}

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        p = p * c["decay"]
        p = p + (-c["eta"]) * g
        ax = jnp.where(c["average"], slots["ax"] + (p - slots["ax"]) * c["mu"], p)
        return p, {"ax": ax}

    return torch_optimizer(
        "optx.asgd",
        {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
        init_scalars=init_scalars,
    )
