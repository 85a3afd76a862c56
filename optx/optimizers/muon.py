"""Muon, as ``torch.optim.Muon``."""

from __future__ import annotations

import math

import jax.numpy as jnp

from optx import torch_ops, validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation


def _zeropower_via_newtonschulz(grad, ns_coefficients, ns_steps: int, eps):
    """Orthogonalizes a matrix with a quintic Newton–Schulz iteration, in bfloat16 as torch."""
    a, b, c = (x.astype(jnp.bfloat16) for x in ns_coefficients)
    x = grad.astype(jnp.bfloat16)
    transposed = grad.shape[0] > grad.shape[1]
    if transposed:
        x = x.T
    x = x / jnp.maximum(jnp.linalg.norm(x), eps.astype(jnp.bfloat16))
    for _ in range(ns_steps):
        gram = x @ x.T
        gram_update = b * gram + c * (gram @ gram)
        x = a * x + gram_update @ x
    return x.T if transposed else x


def _adjust_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


# torch.optim.Muon keeps no per-parameter ``step``.
TORCH_LAYOUT = TorchLayout("Muon", has_step=False, step_free_unless=())


def muon(
    lr: Hyperparam = 1e-3,
    weight_decay: Hyperparam = 0.1,
    momentum: Hyperparam = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[Hyperparam, Hyperparam, Hyperparam] = (3.4445, -4.775, 2.0315),
    eps: Hyperparam = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> GradientTransformation:
    r"""Muon (momentum orthogonalized by Newton–Schulz), exactly as ``torch.optim.Muon``.

    .. math::
       \begin{aligned}
       &\textbf{input}: \gamma \text{ (lr)}, \lambda \text{ (weight decay)}, \mu
         \text{ (momentum)}, \textit{nesterov}, (a, b, c) \text{ (ns coefficients)},
         \epsilon, k \text{ (ns steps)}, \textit{adjust\_lr\_fn} \\
       &B_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad B_t \leftarrow \mu B_{t-1} + (1-\mu) G_t \quad (\texttt{lerp}) \\
       &\quad \tilde B_t \leftarrow (1-\mu) G_t + \mu B_t \textbf{ if } \textit{nesterov}
          \textbf{ else } B_t \\
       &\quad X \leftarrow \tilde B_t / \max(\lVert \tilde B_t \rVert_F, \epsilon)
          \text{ (bfloat16; transposed if rows > cols)} \\
       &\quad \textbf{repeat } k \textbf{ times}: \; A \leftarrow X X^\top, \;
          X \leftarrow a X + (b A + c A^2) X \\
       &\quad \theta_t \leftarrow \theta_{t-1}(1 - \gamma\lambda) - \gamma \, r \, X, \quad
          r = \sqrt{\max(1, A/B)} \text{ (original) or } 0.2\sqrt{\max(A, B)}
          \text{ (match\_rms\_adamw) for an } A \times B \text{ parameter}
       \end{aligned}

    Newton–Schulz runs in bfloat16 as in torch, so results agree with torch to bfloat16
    accuracy. Only 2-D parameters are accepted. State: ``momentum_buffer``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      weight_decay: decoupled weight decay, applied to the parameter as ``1 - lr * weight_decay``.
      momentum: coefficient of the momentum buffer.
      nesterov: use Nesterov momentum.
      ns_coefficients: ``(a, b, c)`` of the quintic Newton–Schulz iteration.
      eps: floor of the Frobenius norm the update is divided by before Newton–Schulz.
      ns_steps: number of Newton–Schulz iterations.
      adjust_lr_fn: learning rate scaling by the parameter's shape: ``"original"`` (or None) for
        :math:`\sqrt{\max(1, A/B)}`, ``"match_rms_adamw"`` for :math:`0.2\sqrt{\max(A, B)}`.

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]])}
      >>> tx = optx.muon(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([[0.5, -0.5], [0.1, 0.2]])}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      [[ 0.9322 -1.9347]
       [ 0.4325 -0.068 ]]
    """
    validation.check(lr, lambda v: v >= 0.0, f"Learning rate should be >= 0 but is: {lr}")
    validation.check(momentum, lambda v: v >= 0.0, f"momentum should be >= 0 but is: {momentum}")
    validation.check(
        weight_decay, lambda v: v >= 0.0, f"weight decay should be >= 0 but is: {weight_decay}"
    )
    if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")

    def init_slots(p):
        if jnp.iscomplexobj(p):
            raise RuntimeError("Muon does not support complex parameters")
        if p.ndim != 2:
            raise ValueError(
                "Muon only supports 2D parameters whereas we found a parameter with size: "
                f"{tuple(p.shape)}"
            )
        return {"momentum_buffer": jnp.zeros_like(p)}

    def coefficients(hp, t, scalars):
        del t
        return {
            "lr": hp["lr"],
            "weight_decay": hp["weight_decay"],
            "momentum": hp["momentum"],
            "one_minus_momentum": 1 - hp["momentum"],
            "ns_coefficients": hp["ns_coefficients"],
            "eps": hp["eps"],
        }, scalars

    def update_leaf(g, p, slots, c):
        buf = torch_ops.lerp(slots["momentum_buffer"], g, c["one_minus_momentum"])
        update = torch_ops.lerp(g, buf, c["momentum"]) if nesterov else buf
        # The orthogonalization keeps the bfloat16 coefficients of torch, which keeps them as
        # Python floats that addmm rounds to bfloat16.
        coeffs = tuple(jnp.asarray(x) for x in c["ns_coefficients"])
        update = _zeropower_via_newtonschulz(update, coeffs, ns_steps, c["eps"]).astype(p.dtype)
        adjusted_lr = c["lr"] * _adjust_ratio(adjust_lr_fn, p.shape)
        p = p * (1 - c["lr"] * c["weight_decay"])
        return p + (-adjusted_lr) * update, {"momentum_buffer": buf}

    return torch_optimizer(
        "optx.muon",
        {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "ns_coefficients": tuple(ns_coefficients),
            "eps": eps,
        },
        init_slots=init_slots,
        coefficients=coefficients,
        update_leaf=update_leaf,
        elementwise=False,
        layout=TORCH_LAYOUT,
    )
