"""Rprop, as ``torch.optim.Rprop``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx import validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("Rprop")


def _torch_sign(x):
    """torch's ``sign``: 0 for NaN (``jnp.sign`` gives NaN), so a NaN gradient entry leaves its
    step size and its parameter untouched, as in torch."""
    return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)


@torch_switches
def rprop(
    lr: Hyperparam = 1e-2,
    etas: tuple[Hyperparam, Hyperparam] = (0.5, 1.2),
    step_sizes: tuple[Hyperparam, Hyperparam] = (1e-6, 50),
    *,
    capturable: bool = False,
    foreach: Any = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformation:
    r"""Resilient backpropagation, exactly as ``torch.optim.Rprop``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \eta_-, \eta_+ \text{ (etas)},
         \Gamma_{min}, \Gamma_{max} \text{ (step sizes)}, \textit{maximize} \\
       &g^{prev}_0 \leftarrow 0, \; \eta_0 \leftarrow \gamma \text{ (per-element step size)} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad s \leftarrow \eta_+ \textbf{ if } g_t g^{prev}_{t-1} > 0, \;
          \eta_- \textbf{ if } g_t g^{prev}_{t-1} < 0, \; 1 \textbf{ otherwise} \\
       &\quad \eta_t \leftarrow \mathrm{clamp}(\eta_{t-1} s, \Gamma_{min}, \Gamma_{max}) \\
       &\quad g_t \leftarrow 0 \textbf{ where } s = \eta_- \quad
          \text{(so the next step's factor is 1)} \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \mathrm{sign}(g_t) \, \eta_t, \quad
          g^{prev}_t \leftarrow g_t
       \end{aligned}

    The update does not lag a step: the sign comparison and the move use the current gradient.
    ``lr`` only seeds the step sizes, on the first update (so later lr changes, schedules
    included, have no effect, as in torch); there is no weight decay.

    State: ``prev``, ``step_size``.

    Args:
      lr: initial step size of every element; read on the first update only.
      etas: ``(etaminus, etaplus)``: the factors a step size is multiplied by when the gradient's
        sign flips or stays.
      step_sizes: ``(min, max)`` bounds of the step sizes.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.rprop(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    del capturable, foreach, differentiable
    validation.check_lr(lr)
    etaminus, etaplus = validation.scalar_hyperparams({"etas": etas})["etas"]
    # Schedules cannot be checked before they run; torch has none.
    if not callable(etaminus) and not callable(etaplus) and not (
        0.0 < float(etaminus) < 1.0 < float(etaplus)
    ):
        raise ValueError(f"Invalid eta values: {etaminus}, {etaplus}")

    def init_slots(p):
        return {"prev": jnp.zeros_like(p), "step_size": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        (etaminus, etaplus), (smin, smax) = hp["etas"], hp["step_sizes"]
        return {
            "first": t == 1,
            "lr": hp["lr"],
            "etaminus": etaminus,
            "etaplus": etaplus,
            "step_size_min": smin,
            "step_size_max": smax,
        }, scalars

    def update_leaf(g, p, slots, c):
        if maximize:
            g = -g
        # torch fills step_size with lr when it creates the state, on the first step.
        step_size = jnp.where(c["first"], c["lr"], slots["step_size"])
        sign = _torch_sign(g * slots["prev"])
        sign = jnp.where(sign > 0, c["etaplus"], sign)
        sign = jnp.where(sign < 0, c["etaminus"], sign)
        sign = jnp.where(sign == 0, jnp.ones_like(sign), sign)
        step_size = jnp.clip(step_size * sign, c["step_size_min"], c["step_size_max"])
        g = jnp.where(sign == c["etaminus"], jnp.zeros_like(g), g)
        return p + (-1) * _torch_sign(g) * step_size, {"prev": g, "step_size": step_size}

    return torch_optimizer(
        "optx.rprop",
        {"lr": lr, "etas": tuple(etas), "step_sizes": tuple(step_sizes)},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
