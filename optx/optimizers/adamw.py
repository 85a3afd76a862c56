"""AdamW, as ``torch.optim.AdamW``."""

from __future__ import annotations

from typing import Any

from optx import validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.optimizers.adam import _adam
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("AdamW", structural_zeros=frozenset({"weight_decay"}))


@torch_switches
def adamw(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: Any = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: Any = None,
) -> GradientTransformation:
    r"""AdamW, exactly as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    The algorithm is :func:`optx.adam`'s with the decay applied to the parameter before the
    moment updates instead of being added to the gradient:

    .. math::
       \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda), \qquad
       m_t, v_t, \hat v, \textit{denom} \text{ as in Adam}, \qquad
       \theta_t \leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t} \cdot m_t / \textit{denom}

    State: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      weight_decay: decoupled weight decay: the parameter is scaled by ``1 - lr * weight_decay``.
      amsgrad: use the maximum of past second moments (AMSGrad); adds ``max_exp_avg_sq``.
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.adamw(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.899 -1.898]
    """
    del foreach, capturable, differentiable, fused
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)
    return _adam("optx.adamw", TORCH_LAYOUT, lr, betas, eps, weight_decay, amsgrad, maximize, True)
