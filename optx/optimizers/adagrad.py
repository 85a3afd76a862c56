"""Adagrad, as ``torch.optim.Adagrad``."""

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
TORCH_LAYOUT = TorchLayout(
    "Adagrad", structural_zeros=frozenset({"weight_decay"}), state_at_init=True)


@torch_switches
def adagrad(
    lr: Hyperparam = 1e-2,
    lr_decay: Hyperparam = 0,
    weight_decay: Hyperparam = 0,
    initial_accumulator_value: Hyperparam = 0,
    eps: Hyperparam = 1e-10,
    foreach: Any = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: Any = None,
) -> GradientTransformation:
    r"""Adagrad, exactly as ``torch.optim.Adagrad``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \eta \text{ (lr decay)}, \lambda \text{ (weight
         decay)}, \tau \text{ (initial accumulator value)}, \epsilon, \textit{maximize} \\
       &\textit{sum}_0 \leftarrow \tau \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \; g_t \leftarrow g_t + \lambda \theta_{t-1} \\
       &\quad \tilde\gamma \leftarrow \gamma / (1 + (t-1)\eta) \\
       &\quad \textit{sum}_t \leftarrow \textit{sum}_{t-1} + g_t^2 \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \tilde\gamma \, g_t / (\sqrt{\textit{sum}_t}
          + \epsilon)
       \end{aligned}

    State: ``sum`` (created at ``init``, as torch creates it in ``__init__``; a complex
    parameter's starts at ``τ + τi``). ``initial_accumulator_value`` is only read at ``init``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      lr_decay: learning rate decay: step :math:`t` uses ``lr / (1 + (t - 1) * lr_decay)``.
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      initial_accumulator_value: starting value of the sum of squared gradients (read at ``init``).
      eps: term added to the denominator, for numerical stability.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adagrad(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del foreach, differentiable, fused
    validation.check_lr(lr)
    validation.check(lr_decay, lambda v: v >= 0.0, f"Invalid lr_decay value: {lr_decay}")
    validation.check_weight_decay(weight_decay)
    validation.check(
        initial_accumulator_value,
        lambda v: v >= 0.0,
        f"Invalid initial_accumulator_value value: {initial_accumulator_value}",
    )
    validation.check_eps(eps)
    initial_accumulator_value = validation.scalar_hyperparams(
        {"initial_accumulator_value": initial_accumulator_value})["initial_accumulator_value"]
    # torch reads it once, when it creates the state; a schedule is read at count 0.
    init_value = float(
        initial_accumulator_value(0)
        if callable(initial_accumulator_value)
        else initial_accumulator_value
    )

    def init_slots(p):
        fill = complex(init_value, init_value) if jnp.iscomplexobj(p) else init_value
        return {"sum": jnp.full_like(p, fill)}

    def coefficients(hp, t, scalars):
        return {
            "neg_clr": -(hp["lr"] / (1 + (t - 1) * hp["lr_decay"])),
            "weight_decay": torch_ops.decay(hp["weight_decay"]),
            "eps": hp["eps"],
        }, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        state_sum = slots["sum"] + g * g
        std = jnp.sqrt(state_sum) + c["eps"]
        # torch: param.addcdiv_(grad, std, value=-clr)
        return torch_ops.Increment((c["neg_clr"] * g) / std), {"sum": state_sum}

    return torch_optimizer(
        "optx.adagrad",
        {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
         "initial_accumulator_value": init_value, "eps": eps},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
