"""Stochastic gradient descent, as ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from optx import torch_ops, validation
from optx._doc_fragments import torch_switches
from optx.hyperparams import Hyperparam, is_constant, is_schedule, is_zero
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

# torch.optim.SGD keeps no ``step`` and allocates ``momentum_buffer`` at the first step with a
# nonzero momentum (the flag says whether it has); a zero momentum allocates none, and one
# lowered to 0 leaves the buffer alone. Its update branches on weight_decay and momentum being
# nonzero; a zero dampening is the running update without its (1 - dampening) factor.
TORCH_LAYOUT = TorchLayout(
    "SGD",
    has_step=False,
    slot_flags=(("momentum_buffer", "momentum_buffer_initialized"),),
    structural_zeros=frozenset({"momentum", "dampening", "weight_decay"}),
    kept_slots=frozenset({"momentum_buffer"}),
)


@torch_switches
def sgd(
    lr: Hyperparam = 1e-3,
    momentum: Hyperparam = 0,
    dampening: Hyperparam = 0,
    weight_decay: Hyperparam = 0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: Any = None,
    differentiable: bool = False,
    fused: Any = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent (optionally with momentum), exactly as ``torch.optim.SGD``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)},
         \lambda \text{ (weight decay)},
         \mu \text{ (momentum)}, \tau \text{ (dampening)}, \textit{nesterov}, \textit{maximize} \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad g_t \leftarrow \nabla f_t(\theta_{t-1}) \text{, negated if } \textit{maximize} \\
       &\quad \textbf{if } \lambda \neq 0: \; g_t \leftarrow g_t + \lambda \theta_{t-1} \\
       &\quad \textbf{if } \mu \neq 0: \\
       &\quad\quad \textbf{if } t > 1: \; b_t \leftarrow \mu b_{t-1} + (1-\tau) g_t
          \quad \textbf{else}: \; b_t \leftarrow g_t \text{ (no dampening on the first step)} \\
       &\quad\quad \textbf{if } \textit{nesterov}: \; g_t \leftarrow g_t + \mu b_t
          \quad \textbf{else}: \; g_t \leftarrow b_t \\
       &\quad \theta_t \leftarrow \theta_{t-1} - \gamma g_t
       \end{aligned}

    State: ``momentum_buffer`` (only when ``momentum`` is a schedule or a nonzero constant). As
    torch decides ``if weight_decay != 0`` and ``if momentum != 0`` at each step, a constant 0
    (``weight_decay``, ``momentum``, ``dampening``) leaves its code out of the compiled update
    and a nonzero constant ``momentum`` leaves out the code for 0: :func:`optx.set_hyperparams`
    refuses to move them across zero (a schedule may take any value). A momentum that is 0 at
    construction allocates no buffer; the ``optx.optim`` adapter rebuilds the transformation
    when a group's value crosses zero, as torch switches branch.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      momentum: momentum factor; 0 allocates no buffer.
      dampening: dampening of the momentum (not applied on the first step).
      weight_decay: weight decay, added to the gradient as an L2 penalty.
      nesterov: use Nesterov momentum (needs a momentum and zero dampening).
      maximize: maximize the objective: step along the gradient instead of against it.
      {torch_switches}

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> tx = optx.sgd(lr=0.1, momentum=0.9)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([0.5, -0.5])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [ 0.95 -1.95]
    """
    del foreach, differentiable, fused
    validation.check_lr(lr)
    validation.check(momentum, lambda v: v >= 0.0, f"Invalid momentum value: {momentum}")
    validation.check_weight_decay(weight_decay)
    momentum, dampening = validation.scalar_hyperparams(
        {"momentum": momentum, "dampening": dampening}).values()
    if (
        nesterov
        and validation.init_checks()
        and not is_schedule(momentum)
        and not is_schedule(dampening)
        and (float(momentum) <= 0 or float(dampening) != 0)  # type: ignore[arg-type]
    ):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    has_buffer = not is_zero(momentum)
    # A nonzero constant momentum always takes torch's momentum branch (set_hyperparams refuses
    # 0), so each leaf runs torch's two lines; a schedule may reach 0 and also carries the skip.
    runtime_momentum = has_buffer and not is_constant(momentum)
    damped = not is_zero(dampening)

    def init_slots(p):
        return {"momentum_buffer": jnp.zeros_like(p)} if has_buffer else {}

    def init_scalars(hp):
        return {"momentum_buffer_initialized": jnp.zeros((), bool)} if has_buffer else {}

    def coefficients(hp, t, scalars):
        del t
        c = {
            "weight_decay": torch_ops.decay(hp["weight_decay"]),
            "neg_lr": -hp["lr"],
        }
        if not has_buffer:
            return c, scalars
        if runtime_momentum:
            return _runtime_momentum_coefficients(c, hp, scalars, nesterov)
        initialized = scalars["momentum_buffer_initialized"]
        # torch's b' = mu * b + (1 - tau) * g, and b' = g on the buffer's first step (b is
        # still zeros: decay 0, weight 1).
        c["buf_decay"] = jnp.where(initialized, hp["momentum"], 0.0)
        if damped:
            c["grad_weight"] = jnp.where(initialized, 1 - hp["dampening"], 1.0)
        if nesterov:
            c["momentum"] = hp["momentum"]
            if hp["weight_decay"] is not None:
                c["one"] = jnp.ones_like(c["neg_lr"])  # see update_leaf
        return c, {"momentum_buffer_initialized": jnp.ones_like(initialized)}

    def update_leaf(g, p, slots, c):
        g = torch_ops.maybe_negate(g, maximize)
        g = torch_ops.add_weight_decay(g, p, c["weight_decay"])
        if not has_buffer:
            return torch_ops.Increment(c["neg_lr"] * g), {}  # param.add_(grad, alpha=-lr)
        if runtime_momentum:
            return _runtime_momentum_step(g, slots["momentum_buffer"], c, nesterov)
        # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        buf = slots["momentum_buffer"] * c["buf_decay"] + (c["grad_weight"] * g if damped else g)
        # nesterov: grad.add(buf, alpha=momentum), else buf; then param.add_(., alpha=-lr).
        # With weight decay, nesterov's g is 1 * g, 1 a runtime value: without the product
        # XLA:CPU writes the decayed gradient out (a params-sized temporary) instead of fusing
        # it into both kernels.
        if nesterov:
            step = c["neg_lr"] * ((c["one"] * g if "one" in c else g) + c["momentum"] * buf)
        else:
            step = c["neg_lr"] * buf
        return torch_ops.Increment(step), {"momentum_buffer": buf}

    return torch_optimizer(
        "optx.sgd",
        {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay},
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        layout=TORCH_LAYOUT,
        init_scalars=init_scalars,
        fixed_when_nonzero=("momentum",),
    )


def _runtime_momentum_coefficients(c, hp, scalars, nesterov):
    """The coefficients for a momentum known only at run time (a schedule), which may be 0."""
    momentum = hp["momentum"]
    dampening = 0.0 if hp["dampening"] is None else hp["dampening"]
    use_momentum = momentum != 0
    initialized = scalars["momentum_buffer_initialized"]
    # The buffer update as one scalar-weighted sum b' = decay * b + weight * g, so the buffer is
    # written without a select (a select between the donated old buffer and the new one makes
    # XLA copy it: 3x slower, a params-sized temporary):
    #   running:             decay = mu, weight = 1 - tau   (torch's mul_ + add_)
    #   first momentum step: decay = 0,  weight = 1         (b is still zeros: b' = g)
    #   momentum 0:          decay = 1,  weight = 0         (torch leaves b alone; with a
    #                        non-finite gradient b picks up NaN here, where torch's does not)
    c["buf_decay"] = jnp.where(use_momentum, jnp.where(initialized, momentum, 0.0), 1.0)
    c["grad_weight"] = jnp.where(use_momentum, jnp.where(initialized, 1 - dampening, 1.0), 0.0)
    # The step (each product rounds as torch's):
    #   nesterov: -lr * (1 * g + w_buf * b'), w_buf = mu (torch's grad.add(buf, alpha=mu)),
    #             or 0 with momentum 0 (g + 0 * b' = g exactly). The 1 is a runtime value:
    #             without the product XLA:CPU stops fusing the decayed gradient into both
    #             kernels and writes it out (a params-sized temporary).
    #   plain:    -lr * b' (torch's param.add_(buf, alpha=-lr)), or -lr * g with momentum 0,
    #             picked by a select: a weighted sum 0 * g + -lr * b' would turn an inf
    #             gradient into a NaN parameter where torch's is inf. Both products sit
    #             under the select; with the select outside them XLA writes the decayed
    #             gradient out, as above.
    if nesterov:
        c["dir_g"] = jnp.ones_like(c["neg_lr"])
        c["dir_buf"] = jnp.where(use_momentum, momentum, 0.0)
    else:
        c["use_momentum"] = use_momentum
    return c, {"momentum_buffer_initialized": initialized | use_momentum}


def _runtime_momentum_step(g, buf, c, nesterov):
    buf = buf * c["buf_decay"] + c["grad_weight"] * g
    if nesterov:
        step = c["neg_lr"] * (c["dir_g"] * g + c["dir_buf"] * buf)
    else:
        step = jnp.where(c["use_momentum"], c["neg_lr"] * buf, c["neg_lr"] * g)
    return torch_ops.Increment(step), {"momentum_buffer": buf}
