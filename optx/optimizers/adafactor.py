"""Adafactor, as ``torch.optim.Adafactor``."""

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
TORCH_LAYOUT = TorchLayout("Adafactor", structural_zeros=frozenset({"weight_decay"}))


def _py_max(a, b):
    """Python's ``max(a, b)``, which torch applies to the ``.item()`` of a norm: ``a`` unless
    ``b > a``, so a NaN ``b`` gives ``a`` (``jnp.maximum`` would give NaN and spread one NaN
    gradient entry over the whole parameter)."""
    return jnp.where(b > a, b, a)


@torch_switches
def adafactor(
    lr: Hyperparam = 1e-2,
    beta2_decay: Hyperparam = -0.8,
    eps: tuple[Hyperparam | None, Hyperparam] = (None, 1e-3),
    d: Hyperparam = 1.0,
    weight_decay: Hyperparam = 0.0,
    *,
    foreach: Any = None,
    maximize: bool = False,
) -> GradientTransformation:
    r"""Adafactor, torch's variant, exactly as ``torch.optim.Adafactor``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \hat\beta_2 \text{ (beta2 decay)},
         \epsilon_1, \epsilon_2 \text{ (eps)}, d \text{ (clipping threshold)},
         \lambda \text{ (weight decay)}, \textit{maximize} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \beta_{2,t} \leftarrow 1 - t^{\hat\beta_2}, \quad
          \rho_t \leftarrow \min(\gamma, 1/\sqrt t), \quad
          \alpha_t \leftarrow \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1})) \rho_t \\
       &\quad \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
       &\quad \textbf{if } \dim(\theta) > 1: \\
       &\quad\quad R_t \leftarrow \beta_{2,t} R_{t-1} + (1-\beta_{2,t})
          \,\mathrm{mean}_{-1}(g_t^2) \text{ (}\mathit{row\_var}\text{)} \\
       &\quad\quad C_t \leftarrow \beta_{2,t} C_{t-1} + (1-\beta_{2,t})
          \,\mathrm{mean}_{-2}(g_t^2) \text{ (}\mathit{col\_var}\text{)} \\
       &\quad\quad \hat v_t \leftarrow R_t C_t / \max(\mathrm{mean}_{-2}(R_t), \epsilon_1) \\
       &\quad \textbf{else}: \; \hat v_t \leftarrow \beta_{2,t}\hat v_{t-1} +
          (1-\beta_{2,t}) g_t^2 \text{ (variance)} \\
       &\quad U_t \leftarrow g_t / \sqrt{\max(\hat v_t, \epsilon_1^2)} \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)} U_t
       \end{aligned}

    ``eps[0]`` (ε₁) of None means ``finfo(param.dtype).eps``. State: ``row_var`` and ``col_var``
    for parameters of two or more dimensions (reduced shapes), ``variance`` otherwise.
    Complex parameters are refused, as torch refuses them.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
        Relative step sizes are capped by it.
      beta2_decay: exponent of the second-moment decay :math:`\beta_{2,t} = 1 - t^{\hat\beta_2}`.
      eps: ``(eps1, eps2)``: ``eps1`` floors the second moment (None: the parameter dtype's machine
        epsilon), ``eps2`` floors the parameter's RMS in the step size.
      d: clipping threshold of the update's RMS.
      weight_decay: decoupled weight decay, applied to the parameter as ``1 - lr * weight_decay``.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adafactor(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.8419 -1.8419]
    """
    del foreach
    eps1, eps2 = eps
    validation.check(lr, lambda v: v >= 0.0, f"Learning rate should be >= 0 but is: {lr}")
    validation.check(
        beta2_decay, lambda v: v <= 0.0, f"beta2_decay should be <= 0 but is: {beta2_decay}"
    )
    validation.check(eps1, lambda v: v >= 0.0, f"epsilon1 should be >= 0 but is: {eps1}",
                     allow_none=True)
    validation.check(eps2, lambda v: v >= 0.0, f"epsilon2 should be >= 0 but is: {eps2}")
    validation.check(d, lambda v: v >= 1.0, f"Clipping threshold d should be >= 1 but is: {d}")
    validation.check(
        weight_decay, lambda v: v >= 0.0, f"weight_decay should be >= 0 but is: {weight_decay}"
    )

    def init_slots(p):
        if jnp.iscomplexobj(p):
            raise RuntimeError("Adafactor does not support complex parameters")
        if p.ndim > 1:
            return {
                "row_var": jnp.zeros((*p.shape[:-1], 1), p.dtype),
                "col_var": jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype),
            }
        return {"variance": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        lr = hp["lr"]
        eps1, eps2 = hp["eps"]
        return {
            "lr": lr,
            "weight_decay": hp["weight_decay"],
            "one_minus_beta2_t": t ** hp["beta2_decay"],
            "rho_t": jnp.minimum(lr, 1 / (t**0.5)),
            "eps1": eps1,
            "eps2": eps2,
            "d": hp["d"],
        }, scalars

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        eps1 = jnp.finfo(p.dtype).eps if c["eps1"] is None else c["eps1"]
        rms_p = jnp.linalg.norm(p.ravel()) / (p.size**0.5)
        alpha = _py_max(c["eps2"], rms_p) * c["rho_t"]
        p = torch_ops.decoupled_decay(p, c["lr"], c["weight_decay"])
        w = c["one_minus_beta2_t"]
        if g.ndim > 1:
            row_mean = jnp.sum(g * g, axis=-1, keepdims=True) / g.shape[-1]
            col_mean = jnp.sum(g * g, axis=-2, keepdims=True) / g.shape[-2]
            row_var = torch_ops.lerp(slots["row_var"], row_mean, w)
            col_var = torch_ops.lerp(slots["col_var"], col_mean, w)
            var_estimate = row_var @ col_var
            var_estimate = var_estimate / jnp.maximum(
                jnp.mean(row_var, axis=-2, keepdims=True), eps1
            )
            new = {"row_var": row_var, "col_var": col_var}
        else:
            variance = torch_ops.lerp(slots["variance"], g * g, w)
            var_estimate = variance
            new = {"variance": variance}
        update = (1 / jnp.sqrt(jnp.maximum(var_estimate, eps1 * eps1))) * g
        denom = _py_max(1.0, jnp.linalg.norm(update.ravel()) / ((update.size**0.5) * c["d"]))
        return p + (-alpha / denom) * update, new

    return torch_optimizer(
        "optx.adafactor",
        {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": (eps1, eps2),
            "d": d,
            "weight_decay": weight_decay,
        },
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        elementwise=False,
        layout=TORCH_LAYOUT,
        optional=frozenset({"eps[0]"}),  # None: the dtype's eps, as torch
    )
