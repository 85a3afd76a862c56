"""Muon, as ``torch.optim.Muon``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from optx import torch_ops, validation
from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.torch_optimizer import torch_optimizer
from optx.transformation import GradientTransformation

Array = jax.Array


def _matmul(x: Array, y: Array) -> Array:
    """``x @ y`` of bfloat16 matrices, accumulated in float32 and left unrounded.

    torch's CPU bfloat16 matmul (oneDNN) accumulates in float32 and rounds once at the end;
    the products of bfloat16 numbers are exact in float32, so this is that sum, up to its order.
    """
    return jnp.matmul(x, y, preferred_element_type=jnp.float32)


def _round(x: Array) -> Array:
    return x.astype(jnp.bfloat16)


def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``a + b`` rounded, and its rounding error (exactly; Knuth's TwoSum)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _sum3(a: Array, b: Array, c: Array) -> Array:
    """``a + b + c`` rounded once, in float32 (Boldo and Melquiond's sum with round-to-odd)."""
    uh, ul = _two_sum(b, c)
    th, tl = _two_sum(a, uh)
    # v = tl + ul rounded to odd: the rounded sum if exact or odd, else its other neighbour.
    v, err = _two_sum(tl, ul)
    even = (lax.bitcast_convert_type(v, jnp.uint32) & 1) == 0
    away = jnp.nextafter(v, jnp.where(err > 0, jnp.inf, -jnp.inf).astype(v.dtype))
    return th + jnp.where((err != 0) & even, away, v)


def _fma(scale: Array, x: Array, y: Array) -> Array:
    """``scale * x + y`` rounded once, in float32, for a bfloat16 ``x``: XLA has no fma.

    ``scale`` splits into a 16-bit and an 8-bit half whose products with the 8-bit ``x`` are
    exact in float32, and the three terms are summed with one rounding.
    """
    bits = lax.bitcast_convert_type(scale, jnp.uint32)
    hi = lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFFF00), jnp.float32)
    x = x.astype(jnp.float32)
    return _sum3(hi * x, (scale - hi) * x, y)


def _addmm(input: Array, m1: Array, m2: Array, beta: Array, alpha: Array | None = None) -> Array:
    """``torch.addmm(input, m1, m2, beta=beta, alpha=alpha)`` of bfloat16 matrices on CPU.

    oneDNN accumulates ``m1 @ m2`` in float32, scales it by ``alpha`` (a rounding), adds
    ``beta * input`` with a fused multiply-add and rounds the result to bfloat16: every
    rounding but the last one in float32. (Rounding ``beta * input`` apart instead changes about
    one entry in ten thousand by a bfloat16 ulp, where the two terms nearly cancel.)
    """
    acc = _matmul(m1, m2)
    if alpha is not None:
        acc = alpha * acc
    return _round(_fma(beta, input, acc))


def _zeropower_via_newtonschulz(grad: Array, coefficients: Array, ns_steps: int) -> Array:
    """torch's ``_zeropower_via_newtonschulz``: a quintic Newton–Schulz iteration in bfloat16.

    ``coefficients`` is ``(a, b, c, eps)`` in float32, as torch's kernels take Python floats.
    Every torch op rounds to bfloat16 once and computes in float32 before that (see
    :func:`_addmm`): rounding ``b * A`` and ``c * A @ A`` to bfloat16 apart, say, moves the
    result by up to 0.1 on entries of size 0.8.
    """
    a, b, c, eps = coefficients
    x = _round(grad)  # grad.bfloat16() (from float64 via float32, as torch and XLA both do)
    transposed = grad.shape[0] > grad.shape[1]
    if transposed:
        x = x.T
    # ortho_grad.div_(ortho_grad.norm().clamp(min=eps)): the norm accumulates in float32 and is
    # rounded; the clamp of a bfloat16 is a bfloat16; the division rounds once.
    x32 = x.astype(jnp.float32)
    norm = _round(jnp.sqrt(jnp.sum(x32 * x32))).astype(jnp.float32)
    x = _round(x32 / _round(jnp.maximum(norm, eps)).astype(jnp.float32))
    for _ in range(ns_steps):
        gram = _round(_matmul(x, x.T))
        gram_update = _addmm(gram, gram, gram, beta=b, alpha=c)
        x = _addmm(x, gram_update, x, beta=a)
    return x.T if transposed else x


def _adjust_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "spectral_unclamped":  # torch 2.14
        return math.sqrt(rows / cols)
    return 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


# torch.optim.Muon keeps no per-parameter ``step``.
TORCH_LAYOUT = TorchLayout("Muon", has_step=False, structural_zeros=frozenset({"weight_decay"}))


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
         \text{ (momentum)}, \textit{nesterov}, \\
       &\qquad (a, b, c) \text{ (ns coefficients)}, \epsilon, k \text{ (ns steps)},
         \mathit{adjust\_lr\_fn} \\
       &B_0 \leftarrow 0 \\
       &\textbf{for } t = 1, 2, \ldots \textbf{ do} \\
       &\quad B_t \leftarrow \mu B_{t-1} + (1-\mu) G_t \quad (\texttt{lerp}) \\
       &\quad \tilde B_t \leftarrow (1-\mu) G_t + \mu B_t \textbf{ if } \textit{nesterov}
          \textbf{ else } B_t \\
       &\quad X \leftarrow \tilde B_t / \max(\lVert \tilde B_t \rVert_F, \epsilon)
          \text{ (bfloat16; transposed if rows > cols)} \\
       &\quad \textbf{repeat } k \textbf{ times}: \; A \leftarrow X X^\top, \;
          X \leftarrow a X + (b A + c A^2) X \\
       &\quad \theta_t \leftarrow \theta_{t-1}(1 - \gamma\lambda) - \gamma \, r \, X,
          \text{ for an } A \times B \text{ parameter:} \\
       &\quad\quad r = \sqrt{\max(1, A/B)} \text{ (original), } 0.2\sqrt{\max(A, B)}
          \text{ (}\mathit{match\_rms\_adamw}\text{)} \\
       &\quad\quad \text{or } r = \sqrt{A/B} \text{ (}\mathit{spectral\_unclamped}\text{)}
       \end{aligned}

    Newton–Schulz runs in bfloat16 with torch's CPU rounding: each of the three matrix
    products per iteration (``X @ X.T`` and torch's two ``addmm``: :math:`bA + cA^2` and
    :math:`aX + (\cdot)X`) accumulates in float32 and rounds to bfloat16 once, with the
    coefficients in float32. The order of the float32 sums inside the products is XLA's; torch's
    depends on the CPU (oneDNN's kernel where the CPU has AVX-512 and the matrices are larger
    than 16x16x16, ATen's AVX-512, AVX2 or scalar kernel otherwise). Where a sum lies within a
    few float32 ulps of a bfloat16 rounding boundary, the two round apart: one entry differs
    from torch's by a bfloat16 ulp, which the later iterations spread. Each op is within a
    bfloat16 rounding of torch's on every x86-64 CPU; float64 trajectories agree to ~1e-15
    where the orders agree and ~1e-4 where they do not.
    Only 2-D parameters are accepted. State: ``momentum_buffer``.

    Args:
      lr: learning rate; a constant or a schedule ``count -> value``, as every float argument.
      weight_decay: decoupled weight decay, applied to the parameter as ``1 - lr * weight_decay``.
      momentum: coefficient of the momentum buffer.
      nesterov: use Nesterov momentum.
      ns_coefficients: ``(a, b, c)`` of the quintic Newton–Schulz iteration.
      eps: floor of the Frobenius norm the update is divided by before Newton–Schulz.
      ns_steps: number of Newton–Schulz iterations.
      adjust_lr_fn: learning rate scaling by the parameter's shape: ``"original"`` (or None) for
        :math:`\sqrt{\max(1, A/B)}`, ``"match_rms_adamw"`` for :math:`0.2\sqrt{\max(A, B)}`,
        ``"spectral_unclamped"`` (torch 2.14) for :math:`\sqrt{A/B}`, not clamped at 1.

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
      [[ 0.9326 -1.9333]
       [ 0.4348 -0.0676]]
    """
    validation.check(lr, lambda v: v >= 0.0, f"Learning rate should be >= 0 but is: {lr}")
    validation.check(momentum, lambda v: v >= 0.0, f"momentum should be >= 0 but is: {momentum}")
    validation.check(
        weight_decay, lambda v: v >= 0.0, f"weight decay should be >= 0 but is: {weight_decay}"
    )
    if adjust_lr_fn is not None and adjust_lr_fn not in [
        "original", "match_rms_adamw", "spectral_unclamped"
    ]:
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
        # torch hands (a, b, c) and eps to float32 kernels as Python floats. The builder casts
        # every float coefficient to the parameter's dtype, which for a bfloat16 or float16
        # parameter would round them further, so they travel as the bits of their float32s.
        ns = jnp.stack([*hp["ns_coefficients"], hp["eps"]]).astype(jnp.float32)
        return {
            "lr": hp["lr"],
            "decay": torch_ops.decay(hp["weight_decay"], hp["lr"]),
            "momentum": hp["momentum"],
            "one_minus_momentum": 1 - hp["momentum"],
            "ns_bits": lax.bitcast_convert_type(ns, jnp.uint32),
        }, scalars

    def update_leaf(g, p, slots, c):
        buf = torch_ops.lerp(slots["momentum_buffer"], g, c["one_minus_momentum"])
        update = torch_ops.lerp(g, buf, c["momentum"]) if nesterov else buf
        ns = lax.bitcast_convert_type(c["ns_bits"], jnp.float32)
        update = _zeropower_via_newtonschulz(update, ns, ns_steps)
        # torch: param.mul_(1 - lr * weight_decay); param.add_(update, alpha=-adjusted_lr),
        # the bfloat16 update promoted (exactly) to the parameter's dtype.
        adjusted_lr = c["lr"] * _adjust_ratio(adjust_lr_fn, p.shape)
        p = torch_ops.decoupled_decay(p, c["lr"], c["decay"])
        return p + (-adjusted_lr) * update.astype(p.dtype), {"momentum_buffer": buf}

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
