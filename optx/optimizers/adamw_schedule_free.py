"""Schedule-free AdamW, as ``schedulefree.AdamWScheduleFree`` (1.4.1)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.schedule_free import PRIVATE, schedule_free, slot_flags, warmup
from optx.transformation import GradientTransformation

TORCH_LAYOUT = TorchLayout("AdamWScheduleFree", has_step=False, private_scalars=PRIVATE,
                           slot_flags=slot_flags("exp_avg_sq"))
CLOSURE_LAYOUT = TorchLayout("AdamWScheduleFreeClosure", has_step=False,
                             private_scalars=PRIVATE, slot_flags=slot_flags("exp_avg_sq"))


def adam_direction(g, y, slots, c):
    """``exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)``, ``g / (sqrt(exp_avg_sq / bc2) +
    eps)`` plus ``weight_decay * y``; RAdam's SGD phase (``c['rectified'] == 0``) keeps ``g``."""
    v = slots["exp_avg_sq"] * c["beta2"] + c["one_minus_beta2"] * g * g
    denom = jnp.sqrt(v / c["bias_correction2"]) + c["eps"]
    d = g / denom
    if "rectified" in c:
        d = jnp.where(c["rectified"] != 0, d, g)
    return d + c["weight_decay"] * y, {"exp_avg_sq": v}


def adam_coefficients(hp: dict[str, Any], t: Any) -> dict[str, Any]:
    beta2 = hp["betas"][1]
    return {"beta2": beta2, "one_minus_beta2": 1 - beta2, "bias_correction2": 1 - beta2**t,
            "eps": hp["eps"]}


def _factor(hp, t):
    return warmup(hp, t), adam_coefficients(hp, t)


@torch_switches
def adamw_schedule_free(
    lr: Hyperparam = 0.0025,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    warmup_steps: Hyperparam = 0,
    r: Hyperparam = 0.0,
    weight_lr_power: Hyperparam = 2.0,
    foreach: Any = True,
) -> GradientTransformation:
    r"""Schedule-free AdamW, exactly as ``schedulefree.AdamWScheduleFree`` (1.4.1) in train mode.

    The params the update receives and returns are schedulefree's ``y``;
    :func:`optx.schedule_free_eval_params` gives the average ``x`` (``optimizer.eval()``).

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \epsilon,
         \lambda \text{ (weight decay)}, T_w \text{ (warmup steps)}, r, p
         \text{ (weight lr power)}, y_0 \\
       &z_0 \leftarrow y_0, \; v_0 \leftarrow 0, \; \gamma^{max}_0 \leftarrow -1, \;
          W_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad \gamma_t \leftarrow \gamma \min(1, t / T_w) \text{ (1 without warmup)}, \;
          \gamma^{max}_t \leftarrow \max(\gamma_t, \gamma^{max}_{t-1}) \\
       &\quad w_t \leftarrow t^r (\gamma^{max}_t)^p, \; W_t \leftarrow W_{t-1} + w_t, \;
          c_t \leftarrow w_t / W_t \text{ (0 if } W_t = 0) \\
       &\quad g_t \leftarrow \nabla f_t(y_{t-1}), \;
          v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
       &\quad d_t \leftarrow g_t / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon)
          + \lambda y_{t-1} \\
       &\quad y_t \leftarrow \mathrm{lerp}(y_{t-1}, z_{t-1}, c_t)
          + \gamma_t (\beta_1 (1 - c_t) - 1) d_t \\
       &\quad z_t \leftarrow z_{t-1} - \gamma_t d_t
       \end{aligned}

    and ``x_t = lerp(y_t, z_t, 1 - 1/beta1)``. State: ``z`` and ``exp_avg_sq``; the count is
    schedulefree's ``k``, the scalars ``weight_sum`` and ``lr_max`` its group keys.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: the interpolation ``beta1`` between ``z`` and ``x``, and the second moment's
        ``beta2``.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay, computed at ``y`` and added to the normalized step.
      warmup_steps: steps of linear learning-rate warmup (0: none).
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adamw_schedule_free(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del foreach
    return _adamw_schedule_free("optx.adamw_schedule_free", TORCH_LAYOUT, False, -1.0, lr,
                                betas, eps, weight_decay, warmup_steps, r, weight_lr_power)


@torch_switches
def adamw_schedule_free_closure(
    lr: Hyperparam = 0.0025,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    warmup_steps: Hyperparam = 0,
    r: Hyperparam = 0,
    weight_lr_power: Hyperparam = 2.0,
    foreach: Any = True,
) -> GradientTransformation:
    r"""The update of ``schedulefree.AdamWScheduleFreeClosure`` (1.4.1) after its closure:
    :func:`optx.adamw_schedule_free`'s step from ``y`` to ``x`` (see
    :func:`optx.optimizers.sgd_schedule_free.sgd_schedule_free_closure`).

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: the interpolation ``beta1`` between ``z`` and ``x``, and the second moment's
        ``beta2``.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay, computed at ``y`` and added to the normalized step.
      warmup_steps: steps of linear learning-rate warmup (0: none).
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.optimizers.adamw_schedule_free import adamw_schedule_free_closure
      >>> tx = adamw_schedule_free_closure(lr=0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), tx.init(params), params)
      >>> print(jnp.array_str(params + updates, precision=4))
      [ 0.9 -1.9]
    """
    del foreach
    return _adamw_schedule_free("optx.optim.AdamWScheduleFreeClosure", CLOSURE_LAYOUT, True,
                                0.0, lr, betas, eps, weight_decay, warmup_steps, r,
                                weight_lr_power)


def _adamw_schedule_free(name, layout, closure_form, lr_max0, lr, betas, eps, weight_decay,
                         warmup_steps, r, weight_lr_power):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    spec = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
            "warmup_steps": warmup_steps, "r": r, "weight_lr_power": weight_lr_power}
    return schedule_free(name, spec, layout=layout, direction=adam_direction,
                         lr_factor=_factor, extra_slots=("exp_avg_sq",),
                         closure_form=closure_form, lr_max0=lr_max0)
