"""SparseAdam, as ``torch.optim.SparseAdam``."""

from __future__ import annotations

import jax.numpy as jnp

from optx import validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# What the optx.optim adapter needs of the torch class (see optx.layout).
TORCH_LAYOUT = TorchLayout("SparseAdam")


def sparse_adam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    maximize: bool = False,
) -> GradientTransformation:
    r"""SparseAdam, exactly as ``torch.optim.SparseAdam``.

    JAX has no sparse gradients, so gradient entries that are exactly zero are treated as
    absent: their moments and parameters are left untouched, as torch leaves the entries that
    a sparse gradient does not hold. The step count advances every update.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2, \epsilon, \textit{maximize} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do, on the entries where } g_t \neq 0: \\
       &\quad m_t \leftarrow m_{t-1} + (1-\beta_1)(g_t - m_{t-1}) \\
       &\quad v_t \leftarrow v_{t-1} + (1-\beta_2)(g_t^2 - v_{t-1}) \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \gamma \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
          \cdot m_t / (\sqrt{v_t} + \epsilon)
       \end{aligned}

    State: ``exp_avg``, ``exp_avg_sq``. Complex parameters are refused, as torch refuses them.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      maximize: maximize the objective: step along the gradient instead of against it.

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.sparse_adam(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.9 -1.9]
    """
    # Unlike the other optimizers, torch's SparseAdam refuses lr == 0 and eps == 0 (strict <).
    validation.scalar_hyperparams({"lr": lr})  # torch checks a tensor lr's size first
    validation.check(lr, lambda v: 0.0 < v, f"Invalid learning rate: {lr}")
    validation.check(eps, lambda v: 0.0 < v, f"Invalid epsilon value: {eps}")
    validation.check_betas(betas)

    def init_slots(p):
        if jnp.iscomplexobj(p):
            raise ValueError("Complex params: SparseAdam does not support complex parameters")
        return {"exp_avg": jnp.zeros_like(p), "exp_avg_sq": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        lr, (beta1, beta2) = hp["lr"], hp["betas"]
        return {
            "one_minus_beta1": 1 - beta1,
            "one_minus_beta2": 1 - beta2,
            "eps": hp["eps"],
            "step_size": lr * jnp.sqrt(1 - beta2**t) / (1 - beta1**t),
        }, scalars

    def update_leaf(g, p, slots, c):
        present = g != 0
        if maximize:
            g = -g
        m_old, v_old = slots["exp_avg"], slots["exp_avg_sq"]
        m_update = (g - m_old) * c["one_minus_beta1"]
        v_update = (g * g - v_old) * c["one_minus_beta2"]
        numer = m_update + m_old
        denom = jnp.sqrt(v_update + v_old) + c["eps"]
        new_p = p + (-c["step_size"] * (numer / denom))
        return jnp.where(present, new_p, p), {
            "exp_avg": jnp.where(present, m_old + m_update, m_old),
            "exp_avg_sq": jnp.where(present, v_old + v_update, v_old),
        }

    return torch_optimizer(
        "optx.sparse_adam",
        {"lr": lr, "betas": tuple(betas), "eps": eps},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
    )
