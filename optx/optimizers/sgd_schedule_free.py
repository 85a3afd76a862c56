"""Schedule-free SGD, as ``schedulefree.SGDScheduleFree`` (1.4.1)."""

from __future__ import annotations

from typing import Any

from optx import validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.schedule_free import PRIVATE, schedule_free, slot_flags, warmup
from optx.transformation import GradientTransformation

TORCH_LAYOUT = TorchLayout("SGDScheduleFree", has_step=False, private_scalars=PRIVATE,
                           slot_flags=slot_flags())
CLOSURE_LAYOUT = TorchLayout("SGDScheduleFreeClosure", has_step=False, private_scalars=PRIVATE,
                           slot_flags=slot_flags())


def _check(lr: Any, momentum: Any, weight_decay: Any) -> None:
    validation.check(lr, lambda v: v >= 0.0, f"Invalid learning rate: {lr}")
    validation.check(weight_decay, lambda v: v >= 0.0,
                     f"Invalid weight_decay value: {weight_decay}")
    validation.check(momentum, lambda v: 0 < v < 1,
                     f"Momentum must be between 0 and 1 exclusive: {momentum}")


def _direction(g, y, slots, c):
    return g + c["weight_decay"] * y, {}  # grad.add_(y, alpha=weight_decay)


def _factor(hp, t):
    return warmup(hp, t), {}


@torch_switches
def sgd_schedule_free(
    lr: Hyperparam = 1.0,
    momentum: Hyperparam = 0.9,
    weight_decay: Hyperparam = 0,
    warmup_steps: Hyperparam = 0,
    r: Hyperparam = 0.0,
    weight_lr_power: Hyperparam = 2,
    foreach: Any = True,
) -> GradientTransformation:
    r"""Schedule-free SGD, exactly as ``schedulefree.SGDScheduleFree`` (1.4.1) in train mode.

    The params the update receives and returns are schedulefree's ``y`` (the point where the
    gradient is taken); :func:`optx.schedule_free_eval_params` gives the average ``x`` that
    ``optimizer.eval()`` puts in the model.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta \text{ (momentum)}, \lambda
         \text{ (weight decay)}, T_w \text{ (warmup steps)}, r, p
         \text{ (weight lr power)}, y_0 \\
       &z_0 \leftarrow y_0, \; \gamma^{max}_0 \leftarrow -1, \; W_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad \gamma_t \leftarrow \gamma \min(1, t / T_w) \text{ (1 without warmup)}, \;
          \gamma^{max}_t \leftarrow \max(\gamma_t, \gamma^{max}_{t-1}) \\
       &\quad w_t \leftarrow t^r (\gamma^{max}_t)^p, \; W_t \leftarrow W_{t-1} + w_t, \;
          c_t \leftarrow w_t / W_t \text{ (0 if } W_t = 0) \\
       &\quad d_t \leftarrow \nabla f_t(y_{t-1}) + \lambda y_{t-1} \\
       &\quad y_t \leftarrow \mathrm{lerp}(y_{t-1}, z_{t-1}, c_t)
          + \gamma_t (\beta (1 - c_t) - 1) d_t \\
       &\quad z_t \leftarrow z_{t-1} - \gamma_t d_t
       \end{aligned}

    and ``x_t = lerp(y_t, z_t, 1 - 1/beta)``. State: ``z``; the count is schedulefree's ``k``,
    the scalars ``weight_sum`` and ``lr_max`` its group keys.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      momentum: the interpolation between ``z`` and ``x`` (``beta``), in (0, 1).
      weight_decay: an L2 penalty, computed at ``y``.
      warmup_steps: steps of linear learning-rate warmup (0: none).
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.sgd_schedule_free(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.95 -1.95]
    """
    del foreach
    _check(lr, momentum, weight_decay)
    return _sgd_schedule_free("optx.sgd_schedule_free", TORCH_LAYOUT, False, -1.0, lr, momentum,
                              weight_decay, warmup_steps, r, weight_lr_power)


@torch_switches
def sgd_schedule_free_closure(
    lr: Hyperparam = 1.0,
    weight_decay: Hyperparam = 0,
    momentum: Hyperparam = 0.9,
    warmup_steps: Hyperparam = 0,
    r: Hyperparam = 0.0,
    weight_lr_power: Hyperparam = 2.0,
    foreach: Any = True,
) -> GradientTransformation:
    r"""The update of ``schedulefree.SGDScheduleFreeClosure`` (1.4.1) after its closure.

    The params it receives are ``y`` (where the closure took the gradient) and the ones it
    returns are ``x``: :func:`sgd_schedule_free`'s step, then ``x = lerp(y, z, 1 - 1/beta)``
    with ``z`` the old iterate, as ``x_t = lerp(x, z_t, c_t)``. The closure class moves the
    params from ``x`` to ``y = lerp(x, z, 1 - beta)`` before calling its closure.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      weight_decay: an L2 penalty, computed at ``y``.
      momentum: the interpolation between ``z`` and ``x`` (``beta``), in (0, 1).
      warmup_steps: steps of linear learning-rate warmup (0: none).
      r: the average's weights grow as ``t**r``.
      weight_lr_power: the average's weights are ``lr_max ** weight_lr_power`` (0: unweighted).
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> from optx.optimizers.sgd_schedule_free import sgd_schedule_free_closure
      >>> tx = sgd_schedule_free_closure(lr=0.1)
      >>> params = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(jnp.array([0.5, -0.5]), tx.init(params), params)
      >>> print(jnp.array_str(params + updates, precision=4))
      [ 0.95 -1.95]
    """
    del foreach
    _check(lr, momentum, weight_decay)
    return _sgd_schedule_free("optx.optim.SGDScheduleFreeClosure", CLOSURE_LAYOUT, True, 0.0,
                              lr, momentum, weight_decay, warmup_steps, r, weight_lr_power)


def _sgd_schedule_free(name, layout, closure_form, lr_max0, lr, momentum, weight_decay,
                       warmup_steps, r, weight_lr_power):
    spec = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
            "warmup_steps": warmup_steps, "r": r, "weight_lr_power": weight_lr_power}
    return schedule_free(name, spec, layout=layout, direction=_direction, lr_factor=_factor,
                         closure_form=closure_form, lr_max0=lr_max0)
