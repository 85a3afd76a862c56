"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import lax

from optx import torch_ops, validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam, is_constant, is_zero
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# torch.optim.RMSprop allocates ``momentum_buffer`` only for a nonzero momentum, and leaves it
# alone while the momentum is 0; its update branches on weight_decay and momentum being nonzero.
TORCH_LAYOUT = TorchLayout(
    "RMSprop",
    structural_zeros=frozenset({"momentum", "weight_decay"}),
    kept_slots=frozenset({"momentum_buffer"}),
)


@torch_switches
def rmsprop(
    lr: Hyperparam = 1e-2,
    alpha: Hyperparam = 0.99,
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    momentum: Hyperparam = 0,
    centered: bool = False,
    capturable: bool = False,
    foreach: Any = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformation:
    r"""RMSprop, exactly as ``torch.optim.RMSprop``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \alpha \text{ (smoothing)}, \epsilon, \lambda
         \text{ (weight decay)}, \mu \text{ (momentum)}, \textit{centered}, \textit{maximize} \\
       &v_0 \leftarrow 0, \; g^{ave}_0 \leftarrow 0, \; b_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \; g_t \leftarrow g_t + \lambda \theta_{t-1} \\
       &\quad v_t \leftarrow \alpha v_{t-1} + (1-\alpha) g_t^2 \\
       &\quad \textbf{if } \textit{centered}: \; g^{ave}_t \leftarrow \alpha g^{ave}_{t-1} +
          (1-\alpha) g_t \; (\texttt{lerp}), \quad \tilde v \leftarrow v_t - (g^{ave}_t)^2
          \quad \textbf{else}: \; \tilde v \leftarrow v_t \\
       &\quad \textit{avg} \leftarrow \sqrt{\tilde v} + \epsilon
          \quad (\epsilon \text{ outside the square root}) \\
       &\quad \textbf{if } \mu > 0: \; b_t \leftarrow \mu b_{t-1} + g_t / \textit{avg}, \;
          \theta_t \leftarrow \theta_{t-1} - \gamma b_t \\
       &\quad \textbf{else}: \; \theta_t \leftarrow \theta_{t-1} - \gamma g_t / \textit{avg}
       \end{aligned}

    No bias correction; the momentum buffer starts at zero and lr is applied after it, so a
    scheduled lr stays exact.

    State: ``square_avg``; ``momentum_buffer`` when ``momentum`` is a schedule or a nonzero
    constant; ``grad_avg`` when centered. As torch decides ``if weight_decay != 0`` and
    ``if momentum > 0`` at each step, a constant 0 leaves its code out of the compiled update and
    a nonzero constant ``momentum`` leaves out the code for 0: :func:`optx.set_hyperparams`
    refuses to move them across zero (a schedule may take any value).

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      alpha: smoothing constant of the running average of squared gradients.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      momentum: momentum factor; 0 allocates no buffer.
      centered: divide by the variance estimate (the mean square minus the squared mean gradient)
        instead of the mean square; adds ``grad_avg``.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.rmsprop(lr=0.01)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del capturable, foreach, differentiable
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check(momentum, lambda v: v >= 0.0, f"Invalid momentum value: {momentum}")
    validation.check_weight_decay(weight_decay)
    validation.check(alpha, lambda v: v >= 0.0, f"Invalid alpha value: {alpha}")
    momentum = validation.scalar_hyperparams({"momentum": momentum})["momentum"]
    has_buffer = not is_zero(momentum)
    # A nonzero constant momentum always takes torch's momentum branch (set_hyperparams refuses
    # 0); a schedule may reach 0, so its kernel also carries torch's plain step.
    runtime_momentum = has_buffer and not is_constant(momentum)

    def init_slots(p):
        slots = {"square_avg": jnp.zeros_like(p)}
        if has_buffer:
            slots["momentum_buffer"] = jnp.zeros_like(p)
        if centered:
            slots["grad_avg"] = jnp.zeros_like(p)
        return slots

    def coefficients(hp, t, scalars):
        del t
        alpha_ = hp["alpha"]
        c = {
            "neg_lr": -hp["lr"],
            "alpha": alpha_,
            "one_minus_alpha": 1 - alpha_,
            "eps": hp["eps"],
            "weight_decay": torch_ops.decay(hp["weight_decay"]),
        }
        if centered:
            c["grad_avg_weight"] = torch_ops.Lerp(1 - alpha_)
        if runtime_momentum:
            # torch updates the buffer only while momentum > 0. As a scalar-weighted sum
            # b' = decay * b + weight * g / avg, without a select between the donated old
            # buffer and the new one (which makes XLA copy the buffer): (momentum, 1) while
            # momentum > 0, (1, 0) otherwise (b exactly, for a finite step).
            use = hp["momentum"] > 0
            c["use_momentum"] = use
            c["buf_decay"] = jnp.where(use, hp["momentum"], 1.0)
            c["buf_weight"] = jnp.where(use, 1.0, 0.0)
        elif has_buffer:
            c["momentum"] = hp["momentum"]
        return c, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        square_avg = slots["square_avg"] * c["alpha"] + c["one_minus_alpha"] * g * g
        new = {"square_avg": square_avg}
        if centered:
            grad_avg = torch_ops.lerp(slots["grad_avg"], g, c["grad_avg_weight"])
            new["grad_avg"] = grad_avg
            avg = jnp.sqrt(square_avg + (-1) * grad_avg * grad_avg) + c["eps"]
        else:
            avg = jnp.sqrt(square_avg) + c["eps"]
        if not has_buffer:  # torch: param.addcdiv_(grad, avg, value=-lr)
            return torch_ops.Increment((c["neg_lr"] * g) / avg), new
        if not runtime_momentum:
            # torch: buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
            buf = slots["momentum_buffer"] * c["momentum"] + g / avg
            new["momentum_buffer"] = buf
            return torch_ops.Increment(c["neg_lr"] * buf), new
        plain = (c["neg_lr"] * g) / avg
        # torch: buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr), only
        # while momentum > 0 (a scalar test, made once per step in coefficients).
        buf = slots["momentum_buffer"] * c["buf_decay"] + c["buf_weight"] * (g / avg)
        new["momentum_buffer"] = buf
        return torch_ops.Increment(lax.select(c["use_momentum"], c["neg_lr"] * buf, plain)), new

    return torch_optimizer(
        "optx.rmsprop",
        {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
         "momentum": momentum},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
        fixed_when_nonzero=("momentum",),
    )
