"""NAdam, as ``torch.optim.NAdam``."""

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
TORCH_LAYOUT = TorchLayout("NAdam", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def nadam(
    lr: Hyperparam = 2e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    momentum_decay: Hyperparam = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: Any = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> GradientTransformation:
    r"""NAdam (Adam with Nesterov momentum), exactly as ``torch.optim.NAdam``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2, \epsilon, \lambda \text{ (weight
         decay)}, \psi \text{ (momentum decay)}, \mathit{decoupled\_weight\_decay},
         \textit{maximize} \\
       &m_0 \leftarrow 0, \; v_0 \leftarrow 0, \; \Pi_0 \leftarrow 1 \text{ (mu product)} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \textbf{ if } \textit{decoupled}:
          \theta_{t-1} \leftarrow \theta_{t-1}(1-\gamma\lambda)
          \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
       &\quad \mu_t \leftarrow \beta_1 (1 - \tfrac12 \, 0.96^{t\psi}), \quad
          \mu_{t+1} \leftarrow \beta_1 (1 - \tfrac12 \, 0.96^{(t+1)\psi}) \\
       &\quad \Pi_t \leftarrow \Pi_{t-1} \mu_t
          \quad \text{(in torch's scalar dtype: float32 unless x64)} \\
       &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
          v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
       &\quad \textit{denom} \leftarrow \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \gamma \frac{1-\mu_t}{1-\Pi_t} g_t/\textit{denom}
          - \gamma \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}} m_t/\textit{denom}
       \end{aligned}

    State: ``exp_avg``, ``exp_avg_sq``; torch's per-parameter ``mu_product`` (equal for all
    parameters) is ``state.scalars["mu_product"]``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay: an L2 penalty added to the gradient, or with
        ``decoupled_weight_decay`` a decay of the parameter.
      momentum_decay: momentum decay :math:`\psi`.
      decoupled_weight_decay: decay the parameter by ``lr * weight_decay`` instead of adding an L2
        penalty to the gradient.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.nadam(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.8944 -1.8944]
    """
    del foreach, capturable, differentiable
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)
    validation.check(
        momentum_decay, lambda v: v >= 0.0, f"Invalid momentum_decay value: {momentum_decay}"
    )

    def init_slots(p):
        return {"exp_avg": jnp.zeros_like(p), "exp_avg_sq": jnp.zeros_like(p)}

    def init_scalars(hp):
        return {"mu_product": jnp.ones((), float_dtype())}

    def coefficients(hp, t, scalars):
        lr, (beta1, beta2), psi = hp["lr"], hp["betas"], hp["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        # torch keeps mu_product in a tensor of its default scalar dtype (float32 unless the
        # default dtype is float64, which x64 mirrors here) and reads it back with .item().
        dtype = scalars["mu_product"].dtype
        mu_product = scalars["mu_product"] * mu.astype(dtype)
        mp = mu_product.astype(mu.dtype)
        c = {
            "lr": lr,
            "weight_decay": hp["weight_decay"],
            "moments": torch_ops.adam_moment_coefficients(beta1, beta2),
            "bias_correction2": 1 - beta2**t,
            "eps": hp["eps"],
            "grad_coef": -lr * (1.0 - mu) / (1.0 - mp),
            "exp_avg_coef": (-lr * mu_next) / (1.0 - mp * mu_next),
        }
        return c, {"mu_product": mu_product}

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g, p = torch_ops.weight_decay(g, p, c["lr"], c["weight_decay"], decoupled_weight_decay)
        m, v = torch_ops.adam_moments(slots["exp_avg"], slots["exp_avg_sq"], g, c["moments"])
        denom = jnp.sqrt(v / c["bias_correction2"]) + c["eps"]
        p = p + (c["grad_coef"] * g) / denom
        p = p + (c["exp_avg_coef"] * m) / denom
        return p, {"exp_avg": m, "exp_avg_sq": v}

    return torch_optimizer(
        "optx.nadam",
        {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
         "momentum_decay": momentum_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
        init_scalars=init_scalars,
    )
