"""torchao 0.18's low-bit optimizers: ``Adam8bit``, ``AdamW8bit``, ``Adam4bit``, ``AdamW4bit``,
``AdamFp8`` and ``AdamWFp8``, as functional constructors.

Each is a name, torchao's defaults and a storage kind over the one update of
``optx.optimizers.adam_low_bit``; the moments are :class:`optx.quantized.QuantizedArray` s.
"""

from __future__ import annotations

from typing import Any, Callable

from optx.hyperparams import Hyperparam
from optx.layout import TorchLayout
from optx.optimizers import low_bit_state_dict
from optx.optimizers.adam_low_bit import low_bit_adam
from optx.transformation import GradientTransformation


def _layout(torch_name: str) -> TorchLayout:
    return TorchLayout(torch_name, private_scalars=frozenset({"key"}),
                       export_state=low_bit_state_dict.export_state,
                       import_state=low_bit_state_dict.import_state)


LAYOUTS = {name: _layout(name) for name in
           ("Adam8bit", "AdamW8bit", "Adam4bit", "AdamW4bit", "AdamFp8", "AdamWFp8")}
"""Each torchao class's :class:`~optx.layout.TorchLayout`, by name."""

_STORAGE = {
    "8bit": "8-bit codes of bitsandbytes' dynamic-tree map (signed for ``exp_avg``, unsigned "
            "for ``exp_avg_sq``), one float32 scale per block of ``block_size`` elements: "
            "1 + 4 / block_size bytes per element",
    "4bit": "4-bit codes, two a byte (the signed dynamic map with 3 exponent bits for "
            "``exp_avg``, the linear map 1/16 .. 1 for ``exp_avg_sq``), one float32 scale per "
            "block of ``block_size`` elements: 0.5 + 4 / block_size bytes per element",
    "fp8": "float8 e4m3fn values scaled so that each block's largest magnitude is 448, one "
           "float32 scale per block of ``block_size`` elements: 1 + 4 / block_size bytes per "
           "element",
}

_DOC = """torchao's ``{cls}``: {what} with the moments stored in {bits}.

    The update is torchao 0.18's ``single_param_adam`` (written out in
    ``optx.optimizers.adam_low_bit``), computed in float32 whatever the parameter's dtype.
    Each moment of a parameter with at least 4096 elements, divisible by ``block_size``, is an
    :class:`optx.quantized.QuantizedArray`: {storage}. A smaller parameter keeps plain moments
    of its own dtype, as in torchao. ``state_dict()`` of ``optx.optim.{cls}`` keeps the codes and
    scales, and its ``load_state_dict`` takes torchao's ``state_dict()``.

    State: ``exp_avg``, ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``; torchao's ``step``
    is the state's ``count``; with ``bf16_stochastic_round``, ``scalars["key"]`` is the PRNG key
    of the rounding.

    Args:
      lr: learning rate (float32, as torchao's tensor lr); a constant or a schedule.
      betas: coefficients of the running averages of the gradient and of its square.
      eps: term added to the denominator, for numerical stability.
      weight_decay: {decay}
      amsgrad: use the maximum of past second moments (AMSGrad); adds ``max_exp_avg_sq``.
      block_size: elements per quantization scale (torchao's default {block}).
      bf16_stochastic_round: round bfloat16 parameters stochastically (unbiased) from the
        float32 result, instead of to nearest.

    Example:
      >>> import jax.numpy as jnp
      >>> import optx
      >>> params = {{"w": jnp.array([1.0, -2.0])}}
      >>> tx = optx.{name}(lr=0.1)
      >>> state = tx.init(params)
      >>> grads = {{"w": jnp.array([0.5, -0.5])}}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optx.apply_updates(params, updates)
      >>> print(jnp.array_str(params["w"], precision=4))
      {result}
    """

_ADAM = "Adam with an L2 penalty: ``g + weight_decay * p``."
_ADAMW = "decoupled weight decay: ``p - (lr * weight_decay) * p`` before the update."


def _doc(cls: str, kind: str, block: int, adamw: bool,
         result: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__doc__ = _DOC.format(
            cls=cls, what="AdamW (decoupled weight decay)" if adamw else "Adam", name=fn.__name__,
            bits={"8bit": "8 bits", "4bit": "4 bits", "fp8": "fp8"}[kind],
            storage=_STORAGE[kind], decay=_ADAMW if adamw else _ADAM, block=block,
            result=result)
        return fn

    return decorate


def _make(name: str, cls: str, kind: str, lr: Any, betas: Any, eps: Any, weight_decay: Any,
          amsgrad: bool, block_size: int, bf16_stochastic_round: bool,
          is_adamw: bool) -> GradientTransformation:
    return low_bit_adam(
        f"optx.{name}", LAYOUTS[cls], kind, lr=lr, betas=betas, eps=eps,
        weight_decay=weight_decay, amsgrad=amsgrad, block_size=block_size,
        bf16_stochastic_round=bf16_stochastic_round, is_adamw=is_adamw)


@_doc("Adam8bit", "8bit", 256, False, "[ 0.9 -1.9]")
def adam_8bit(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    amsgrad: bool = False,
    *,
    block_size: int = 256,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adam_8bit", "Adam8bit", "8bit", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, False)


@_doc("AdamW8bit", "8bit", 256, True, "[ 0.899 -1.898]")
def adamw_8bit(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 1e-2,
    amsgrad: bool = False,
    *,
    block_size: int = 256,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adamw_8bit", "AdamW8bit", "8bit", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, True)


@_doc("Adam4bit", "4bit", 128, False, "[ 0.9 -1.9]")
def adam_4bit(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    amsgrad: bool = False,
    *,
    block_size: int = 128,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adam_4bit", "Adam4bit", "4bit", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, False)


@_doc("AdamW4bit", "4bit", 128, True, "[ 0.899 -1.898]")
def adamw_4bit(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 1e-2,
    amsgrad: bool = False,
    *,
    block_size: int = 128,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adamw_4bit", "AdamW4bit", "4bit", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, True)


@_doc("AdamFp8", "fp8", 256, False, "[ 0.9 -1.9]")
def adam_fp8(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0,
    amsgrad: bool = False,
    *,
    block_size: int = 256,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adam_fp8", "AdamFp8", "fp8", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, False)


@_doc("AdamWFp8", "fp8", 256, True, "[ 0.899 -1.898]")
def adamw_fp8(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 1e-2,
    amsgrad: bool = False,
    *,
    block_size: int = 256,
    bf16_stochastic_round: bool = False,
) -> GradientTransformation:
    return _make("adamw_fp8", "AdamWFp8", "fp8", lr, betas, eps, weight_decay, amsgrad,
                 block_size, bf16_stochastic_round, True)


__all__ = ["adam_8bit", "adamw_8bit", "adam_4bit", "adamw_4bit", "adam_fp8", "adamw_fp8"]
