"""Adam, as ``torch.optim.Adam``."""

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
TORCH_LAYOUT = TorchLayout("Adam", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def adam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    amsgrad: bool = False,
    *,
    foreach: Any = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: Any = None,
    decoupled_weight_decay: bool = False,
) -> GradientTransformation:
    r"""Adam, exactly as ``torch.optim.Adam``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \theta_0,
         \lambda \text{ (weight decay)}, \epsilon, \textit{amsgrad}, \textit{maximize},
         \mathit{decoupled\_weight\_decay} \\
       &m_0 \leftarrow 0, \; v_0 \leftarrow 0, \; \hat v^{max}_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \textbf{ if } \textit{decoupled}:
          \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda)
          \textbf{ else } g_t \leftarrow g_t + \lambda\theta_{t-1} \\
       &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t \quad (\texttt{lerp}) \\
       &\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
       &\quad \textbf{if } \textit{amsgrad}: \; v^{max}_t \leftarrow \max(v^{max}_{t-1}, v_t),
          \; \hat v \leftarrow v^{max}_t \textbf{ else } \hat v \leftarrow v_t \\
       &\quad \textit{denom} \leftarrow \sqrt{\hat v} / \sqrt{1-\beta_2^t} + \epsilon \\
       &\quad \theta_t \leftarrow \theta_{t-1}
          - \frac{\gamma}{1-\beta_1^t} \cdot m_t / \textit{denom}
       \end{aligned}

    Note where torch puts ``eps``: after the bias correction of the square root, and amsgrad's
    maximum is taken over the raw (uncorrected) second moment.

    State: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``; torch's ``step`` is
    the state's ``count``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay: an L2 penalty added to the gradient, or with
        ``decoupled_weight_decay`` a decay of the parameter (AdamW).
      amsgrad: use the maximum of past second moments (AMSGrad); adds ``max_exp_avg_sq``.
      maximize: maximize the objective: step along the gradient instead of against it.
      decoupled_weight_decay: decay the parameter by ``lr * weight_decay`` instead of adding an L2
        penalty to the gradient, which makes this AdamW.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adam(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del foreach, capturable, differentiable, fused
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)
    return _adam(
        "optx.adam", TORCH_LAYOUT, lr, betas, eps, weight_decay, amsgrad, maximize,
        decoupled_weight_decay,
    )


def _adam(name, layout, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    def init_slots(p):
        slots = {"exp_avg": jnp.zeros_like(p), "exp_avg_sq": jnp.zeros_like(p)}
        if amsgrad:
            slots["max_exp_avg_sq"] = jnp.zeros_like(p)
        return slots

    def coefficients(hp, t, scalars):
        lr, (beta1, beta2) = hp["lr"], hp["betas"]
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        c = {
            "lr": lr,
            "weight_decay": torch_ops.decay(
                hp["weight_decay"], lr if decoupled_weight_decay else None
            ),
            "moments": torch_ops.adam_moment_coefficients(beta1, beta2),
            "neg_step_size": -(lr / bias_correction1),
            "bias_correction2_sqrt": jnp.sqrt(bias_correction2),
            "eps": hp["eps"],
        }
        return c, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g, p = torch_ops.weight_decay(g, p, c["lr"], c["weight_decay"], decoupled_weight_decay)
        m, v = torch_ops.adam_moments(slots["exp_avg"], slots["exp_avg_sq"], g, c["moments"])
        new = {"exp_avg": m, "exp_avg_sq": v}
        if amsgrad:
            v = jnp.maximum(slots["max_exp_avg_sq"], v)
            new["max_exp_avg_sq"] = v
        denom = jnp.sqrt(v) / c["bias_correction2_sqrt"] + c["eps"]
        step = (c["neg_step_size"] * m) / denom  # torch: param.addcdiv_(exp_avg, denom, -step_size)
        if decoupled_weight_decay:
            return p + step, new  # p was decayed above: the update is new_p - old p
        return torch_ops.Increment(step), new

    return torch_optimizer(
        name,
        {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=layout,
    )
