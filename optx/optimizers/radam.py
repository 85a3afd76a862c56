"""RAdam, as ``torch.optim.RAdam``."""

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
TORCH_LAYOUT = TorchLayout("RAdam", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def radam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: Any = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> GradientTransformation:
    r"""RAdam (rectified Adam), exactly as ``torch.optim.RAdam``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2, \epsilon, \lambda \text{ (weight
         decay)}, \mathit{decoupled\_weight\_decay}, \textit{maximize} \\
       &m_0 \leftarrow 0, \; v_0 \leftarrow 0, \;
          \rho_\infty \leftarrow 2/(1-\beta_2) - 1 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \textbf{ if } \textit{decoupled}:
          \theta_{t-1} \leftarrow \theta_{t-1}(1-\gamma\lambda)
          \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
       &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
          v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
       &\quad \hat m_t \leftarrow m_t / (1-\beta_1^t), \quad
          \rho_t \leftarrow \rho_\infty - 2t\beta_2^t/(1-\beta_2^t) \\
       &\quad \textbf{if } \rho_t > 5: \;
          r_t \leftarrow \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}
          {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}, \;
          \theta_t \leftarrow \theta_{t-1} - \gamma \hat m_t \,
          \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon} \, r_t \\
       &\quad \textbf{else}: \; \theta_t \leftarrow \theta_{t-1} - \gamma \hat m_t
       \end{aligned}

    State: ``exp_avg``, ``exp_avg_sq``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay: an L2 penalty added to the gradient, or with
        ``decoupled_weight_decay`` a decay of the parameter.
      decoupled_weight_decay: decay the parameter by ``lr * weight_decay`` instead of adding an L2
        penalty to the gradient.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.radam(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.95 -1.95]
    """
    del foreach, capturable, differentiable
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)

    def init_slots(p):
        return {"exp_avg": jnp.zeros_like(p), "exp_avg_sq": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        lr, (beta1, beta2) = hp["lr"], hp["betas"]
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        rect = jnp.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        return {
            "lr": lr,
            "weight_decay": hp["weight_decay"],
            "moments": torch_ops.adam_moment_coefficients(beta1, beta2),
            "bias_correction1": bias_correction1,
            "bias_correction2_sqrt": jnp.sqrt(bias_correction2),
            "rectify": rho_t > 5.0,
            "rect": jnp.where(rho_t > 5.0, rect, 0.0),
            "eps": hp["eps"],
        }, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g, p = torch_ops.weight_decay(g, p, c["lr"], c["weight_decay"], decoupled_weight_decay)
        m, v = torch_ops.adam_moments(slots["exp_avg"], slots["exp_avg_sq"], g, c["moments"])
        m_hat = m / c["bias_correction1"]
        adaptive_lr = c["bias_correction2_sqrt"] / (jnp.sqrt(v) + c["eps"])
        rectified = p + (-1.0) * (m_hat * c["lr"] * adaptive_lr * c["rect"])
        plain = p + (-1.0) * (m_hat * c["lr"])
        return jnp.where(c["rectify"], rectified, plain), {"exp_avg": m, "exp_avg_sq": v}

    return torch_optimizer(
        "optx.radam",
        {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
