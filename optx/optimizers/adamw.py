"""AdamW, as ``torch.optim.AdamW``."""

from __future__ import annotations

from typing import Any

from optx import validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.optimizers.adam import _adam
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("AdamW")


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
    """
    del foreach, capturable, differentiable, fused
    validation.check_lr(lr)
    validation.check_eps(eps)
    validation.check_betas(betas)
    validation.check_weight_decay(weight_decay)
    return _adam("optx.adamw", TORCH_LAYOUT, lr, betas, eps, weight_decay, amsgrad, maximize, True)
