"""Adadelta, as ``torch.optim.Adadelta``."""

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
TORCH_LAYOUT = TorchLayout("Adadelta", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def adadelta(
    lr: Hyperparam = 1.0,
    rho: Hyperparam = 0.9,
    eps: Hyperparam = 1e-6,
    weight_decay: Hyperparam = 0,
    foreach: Any = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformation:
    r"""Adadelta, exactly as ``torch.optim.Adadelta``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \rho \text{ (decay)}, \epsilon, \lambda
         \text{ (weight decay)}, \textit{maximize} \\
       &v_0 \leftarrow 0 \text{ (square avg)}, \; u_0 \leftarrow 0 \text{ (accumulated delta)} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \; g_t \leftarrow g_t + \lambda \theta_{t-1} \\
       &\quad v_t \leftarrow \rho v_{t-1} + (1-\rho) g_t^2 \\
       &\quad \Delta x_t \leftarrow \sqrt{u_{t-1} + \epsilon} / \sqrt{v_t + \epsilon} \cdot g_t
          \quad (\epsilon \text{ inside both roots}) \\
       &\quad u_t \leftarrow \rho u_{t-1} + (1-\rho) \Delta x_t^2 \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \gamma \Delta x_t
       \end{aligned}

    State: ``square_avg``, ``acc_delta``.

    Args:
      lr: coefficient that scales the delta before it is applied; a constant or a schedule
        ``count -> value``, as every float argument.
      rho: coefficient of the running averages of squared gradients and squared deltas.
      eps: term added inside both square roots, for numerical stability.
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adadelta(lr=1.0)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9968 -1.9968]
    """
    del foreach, capturable, differentiable
    validation.check_lr(lr)
    validation.check(rho, lambda v: 0.0 <= v <= 1.0, f"Invalid rho value: {rho}")
    validation.check_eps(eps)
    validation.check_weight_decay(weight_decay)

    def init_slots(p):
        return {"square_avg": jnp.zeros_like(p), "acc_delta": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        del t
        return {
            "lr": hp["lr"],
            "rho": hp["rho"],
            "one_minus_rho": 1 - hp["rho"],
            "eps": hp["eps"],
            "weight_decay": hp["weight_decay"],
        }, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        square_avg = slots["square_avg"] * c["rho"] + c["one_minus_rho"] * g * g
        std = jnp.sqrt(square_avg + c["eps"])
        delta = jnp.sqrt(slots["acc_delta"] + c["eps"]) / std * g
        acc_delta = slots["acc_delta"] * c["rho"] + c["one_minus_rho"] * delta * delta
        return p - c["lr"] * delta, {"square_avg": square_avg, "acc_delta": acc_delta}

    return torch_optimizer(
        "optx.adadelta",
        {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
