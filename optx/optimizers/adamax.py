"""Adamax, as ``torch.optim.Adamax``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx import torch_ops, validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("Adamax", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def adamax(
    lr: Hyperparam = 2e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    foreach: Any = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> GradientTransformation:
    r"""Adamax (Adam with the infinity norm), exactly as ``torch.optim.Adamax``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2, \epsilon, \lambda
         \text{ (weight decay)}, \textit{maximize} \\
       &m_0 \leftarrow 0, \; u_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \; g_t \leftarrow g_t + \lambda \theta_{t-1} \\
       &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t \quad (\texttt{lerp}) \\
       &\quad u_t \leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon)
          \quad (\epsilon \text{ inside the max}) \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t} m_t / u_t
       \end{aligned}

    State: ``exp_avg``, ``exp_inf``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running average of the gradient and of the decay of the infinity
        norm.
      eps: term added inside the maximum, for numerical stability.
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adamax(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del foreach, differentiable, capturable
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)

    def init_slots(p):
        return {"exp_avg": jnp.zeros_like(p), "exp_inf": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        beta1, beta2 = hp["betas"]
        return {
            "weight_decay": hp["weight_decay"],
            "one_minus_beta1": 1 - beta1,
            "beta2": beta2,
            "eps": hp["eps"],
            "clr": hp["lr"] / (1 - beta1**t),
        }, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        m = torch_ops.lerp(slots["exp_avg"], g, c["one_minus_beta1"])
        u = jnp.maximum(slots["exp_inf"] * c["beta2"], jnp.abs(g) + c["eps"])
        return p + (-c["clr"] * m) / u, {"exp_avg": m, "exp_inf": u}

    return torch_optimizer(
        "optx.adamax",
        {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
