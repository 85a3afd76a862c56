"""Schedule-free RAdam, as ``schedulefree.RAdamScheduleFree`` (1.4.1)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.optimizers.adamw_schedule_free import adam_coefficients, adam_direction
from optx.schedule_free import PRIVATE, schedule_free, slot_flags
from optx.transformation import GradientTransformation

TORCH_LAYOUT = TorchLayout("RAdamScheduleFree", has_step=False, private_scalars=PRIVATE,
                           slot_flags=slot_flags("exp_avg_sq"))
CLOSURE_LAYOUT = TorchLayout("RAdamScheduleFreeClosure", has_step=False,
                             private_scalars=PRIVATE, slot_flags=slot_flags("exp_avg_sq"))


def _rectification(silent_sgd_phase: bool):
    def factor(hp, t):
        beta2 = hp["betas"][1]
        beta2_t = beta2**t
        bias_correction2 = 1 - beta2_t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2_t / bias_correction2
        adam = rho_t > 4.0
        inner = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        rect = jnp.where(adam, jnp.sqrt(jnp.where(adam, inner, 1.0)),
                         0.0 if silent_sgd_phase else 1.0)
        return rect, {**adam_coefficients(hp, t), "rectified": adam}

    return factor


@torch_switches
def radam_schedule_free(
    lr: Hyperparam = 0.0025,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    r: Hyperparam = 0.0,
    weight_lr_power: Hyperparam = 2.0,
    foreach: Any = True,
    silent_sgd_phase: bool = True,
) -> GradientTransformation:
    r"""Schedule-free RAdam, exactly as ``schedulefree.RAdamScheduleFree`` (1.4.1) in train
    mode: :func:`optx.adamw_schedule_free` with RAdam's rectification as its warmup.

    .. math::
       \begin{aligned}
       &\rho_\infty \leftarrow 2 / (1 - \beta_2) - 1, \;
          \rho_t \leftarrow \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t) \\
       &\textbf{if } \rho_t > 4: \; \gamma_t \leftarrow \gamma \sqrt{
          \frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}},
          \; d_t \leftarrow g_t / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon) + \lambda y_{t-1} \\
       &\textbf{else}: \; \gamma_t \leftarrow 0 \text{ (} \gamma \text{ without the silent
          SGD phase)}, \; d_t \leftarrow g_t + \lambda y_{t-1}
       \end{aligned}

    then ``lr_max``, the weights, ``y`` and ``z`` as in :func:`optx.adamw_schedule_free`.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: the interpolation ``beta1`` between ``z`` and ``x``, and the second moment's
        ``beta2``.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay, computed at ``y`` and added to the step.
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      silent_sgd_phase: while ``rho_t <= 4`` leave the params still (lr 0) instead of taking
        plain SGD steps.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.radam_schedule_free(lr=0.1, silent_sgd_phase=False)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.95 -1.95]
    """
    del foreach
    return _radam_schedule_free("optx.radam_schedule_free", TORCH_LAYOUT, False, -1.0, lr,
                                betas, eps, weight_decay, r, weight_lr_power, silent_sgd_phase)


@torch_switches
def radam_schedule_free_closure(
    lr: Hyperparam = 0.0025,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    r: Hyperparam = 0,
    weight_lr_power: Hyperparam = 2.0,
    foreach: Any = True,
    silent_sgd_phase: bool = True,
) -> GradientTransformation:
    r"""The update of ``schedulefree.RAdamScheduleFreeClosure`` (1.4.1) after its closure:
    :func:`optx.radam_schedule_free`'s step from ``y`` to ``x`` (see
    :func:`optx.optimizers.sgd_schedule_free.sgd_schedule_free_closure`).

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: the interpolation ``beta1`` between ``z`` and ``x``, and the second moment's
        ``beta2``.
      eps: term added to the denominator, for numerical stability.
      weight_decay: weight decay, computed at ``y`` and added to the step.
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      silent_sgd_phase: while ``rho_t <= 4`` leave the params still (lr 0) instead of taking
        plain SGD steps.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.optimizers.radam_schedule_free import radam_schedule_free_closure
      >>> tx = radam_schedule_free_closure(lr=0.1, silent_sgd_phase=False)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), tx.init(params), params)
      >>> print(jnp.array_str(params + updates, precision=4))
      [ 0.95 -1.95]
    """
    del foreach
    return _radam_schedule_free("optx.optim.RAdamScheduleFreeClosure", CLOSURE_LAYOUT, True,
                                0.0, lr, betas, eps, weight_decay, r, weight_lr_power,
                                silent_sgd_phase)


def _radam_schedule_free(name, layout, closure_form, lr_max0, lr, betas, eps, weight_decay, r,
                         weight_lr_power, silent_sgd_phase):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    spec = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "r": r,
            "weight_lr_power": weight_lr_power}
    return schedule_free(name, spec, layout=layout, direction=adam_direction,
                         lr_factor=_rectification(bool(silent_sgd_phase)),
                         extra_slots=("exp_avg_sq",), closure_form=closure_form,
                         lr_max0=lr_max0)
