"""The optimizer registry the generic tests read, in the manner of torch's ``optim_db``
(``torch/testing/_internal/common_optimizers.py``).

One :class:`OptimizerInfo` per optimizer holds its torch counterpart, the configurations each
kind of test runs and the flags that say which tests apply. The parity, variants, bad-input,
invalid-hyperparameter, state_dict, compile-once, property, complex and float32 tests all
iterate over :data:`OPTIMIZERS`, so adding an optimizer is its module plus one entry here.
Test ids name the configuration by what differs from torch's defaults (``adam-lr0.01-amsgrad``).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from typing import Any, Callable

import jax.numpy as jnp
import pytest
import torch
from hypothesis import strategies as st

import optx

Kwargs = dict[str, Any]


def grid(**axes) -> list[Kwargs]:
    """Every combination of the given values, as keyword-argument dicts."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def wave(base: float, amp: float) -> Callable:
    """A schedule usable with traced counts (optx) and Python ints (torch)."""
    return lambda count: base * (1.0 + amp * jnp.cos(0.3 * count))


@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
    """What the generic tests need to know about one optimizer.

    Attributes:
      name: the ``optx`` constructor's name (``optx.<name>`` and ``optx.optim`` via torch_name).
      torch_name: the ``torch.optim`` class it reproduces.
      parity: float64 parity configurations (kwargs), run against torch for ``parity_steps``.
      parity_steps: steps of each parity run.
      parity_tol: the largest relative error allowed in parity runs.
      parity_seed: the seed of the initial parameters; ``None``: ``len(kwargs)``.
      parity_shapes: parameter shapes of parity runs; ``None``: ``parity.SHAPES``.
      structural: hyperparameters whose value is fixed when the transformation is built (they
        change the state's structure or are checked together at construction). Parity runs
        compile one step per optimizer, structural values and side of zero of the layout's
        ``structural_zeros`` (built with the config's own values), and put every other numeric
        hyperparameter into the state with ``optx.set_hyperparams``.
        (Not the layout's ``structural_zeros``: these also cover values checked together.)
      sparse_grads: torch takes the gradients as sparse tensors (zeros are absent entries).
      state_in_slots: every torch state entry is in the optx state's ``slots``/``scalars`` under
        the same name (checked on the first and last parity configs).
      has_step: torch keeps a per-parameter ``step`` in its state (read from the
        transformation's declared :class:`optx.layout.TorchLayout`).
      scheduled: ``(kwargs, schedules)``: every float hyperparameter scheduled, checked against
        torch with the param group's value set before each step.
      variants: kwargs for the jit / no-jit / pmap variants test; ``None``: not run.
      invalid: kwargs torch refuses with a ValueError; optx must raise the same message.
      tensor_lr: torch refuses a tensor lr with several elements (optx an array lr likewise).
      elementwise: updates each leaf on its own, so any pytree of arrays is valid params (the
        bad-input tests apply).
      scheduled_lr: takes an lr schedule; 100 jitted updates compile once.
      matrices_only: parameters must be 2-D.
      supports_complex: complex params are updated as their real view (``True``) or refused
        with "does not support complex" (``False``); ``None``: untested.
      complex_kwargs: the configuration of the complex parity test.
      float32_kwargs: the configuration of the float32 parity test; ``None``: not run.
      state_dict: configurations whose ``optx.optim`` state_dicts round-trip with torch's.
      property_kwargs: a hypothesis strategy of valid kwargs for the property test.
      supports_empty_params: torch accepts parameters with no elements.
      needs_closure: ``update`` needs ``value`` and ``value_fn`` (torch's ``step(closure)``).
    """

    name: str
    torch_name: str
    parity: list[Kwargs] = dataclasses.field(default_factory=list)
    parity_steps: int = 50
    parity_tol: float = 1e-10
    parity_seed: int | None = None
    parity_shapes: tuple[tuple[int, ...], ...] | None = None
    structural: tuple[str, ...] = ()
    sparse_grads: bool = False
    state_in_slots: bool = False
    scheduled: tuple[Kwargs, Kwargs] | None = None
    variants: Kwargs | None = None
    invalid: list[Kwargs] = dataclasses.field(default_factory=list)
    tensor_lr: bool = False
    elementwise: bool = True
    scheduled_lr: bool = True
    matrices_only: bool = False
    supports_complex: bool | None = None
    complex_kwargs: Kwargs | None = None
    float32_kwargs: Kwargs | None = None
    state_dict: list[Kwargs] = dataclasses.field(default_factory=list)
    property_kwargs: Any = None
    supports_empty_params: bool = True
    needs_closure: bool = False

    @property
    def fn(self) -> Callable[..., optx.GradientTransformation]:
        return getattr(optx, self.name)

    @property
    def has_step(self) -> bool:
        return self.fn().layout.has_step

    @property
    def torch_cls(self) -> type:
        return getattr(torch.optim, self.torch_name)

    def id(self, kwargs: Kwargs) -> str:
        """``name-...``: the kwargs that differ from torch's defaults (``adam-wd0.1-amsgrad``)."""
        defaults = {
            k: p.default for k, p in inspect.signature(self.torch_cls.__init__).parameters.items()
        }
        parts = [self.name]
        for key, value in kwargs.items():
            if key in defaults and _same(value, defaults[key]):
                continue
            short = _SHORT.get(key, key)
            if isinstance(value, bool):
                parts.append(short if value else f"no_{short}")
            elif isinstance(value, str):
                parts.append(f"{short}={value}")
            elif isinstance(value, tuple):
                parts.append(short + ",".join(map(str, value)))
            elif callable(value):
                parts.append(f"{short}=fn")
            else:
                parts.append(f"{short}{value}")
        if len(parts) > 1:
            return "-".join(parts)
        # Spelled out, torch's defaults run from other seeds (``len(kwargs)``) than ``{}``.
        return f"{self.name}-defaults" + ("-spelled-out" if kwargs else "")


_SHORT = {"weight_decay": "wd", "decoupled_weight_decay": "decoupled",
          "initial_accumulator_value": "init_acc"}


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _sgd_parity():
    out = []
    for momentum, dampening, nesterov, wd, maximize in itertools.product(
        [0.0, 0.9], [0.0, 0.3], [False, True], [0.0, 0.05], [False, True]
    ):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        out.append(dict(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=wd, maximize=maximize))
    return out


def _adam_parity(with_decoupled: bool):
    out = []
    for amsgrad, wd, maximize, decoupled in itertools.product(
        [False, True], [0.0, 0.1], [False, True], [False, True] if with_decoupled else [None]
    ):
        cfg = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, amsgrad=amsgrad,
                   maximize=maximize)
        if decoupled is not None:
            cfg["decoupled_weight_decay"] = decoupled
        out.append(cfg)
    out.append(dict())  # torch's defaults
    return out


# Hypothesis strategies of valid hyperparameters for the property tests.
_unit = st.floats(0.0, 0.99)
_lr = st.floats(1e-4, 0.3)
_wd = st.one_of(st.just(0.0), st.floats(0.0, 0.2))
_eps = st.floats(1e-10, 1e-3)
_betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999))


@st.composite
def _sgd_kwargs(draw):
    momentum = draw(st.one_of(st.just(0.0), _unit))
    nesterov = draw(st.booleans()) and momentum > 0
    dampening = 0.0 if nesterov else draw(st.one_of(st.just(0.0), _unit))
    return dict(lr=draw(_lr), momentum=momentum, dampening=dampening, weight_decay=draw(_wd),
                nesterov=nesterov, maximize=draw(st.booleans()))


@st.composite
def _adam_kwargs(draw, decoupled=True):
    kw = dict(lr=draw(_lr), betas=draw(_betas), eps=draw(_eps), weight_decay=draw(_wd),
              amsgrad=draw(st.booleans()), maximize=draw(st.booleans()))
    if decoupled:
        kw["decoupled_weight_decay"] = draw(st.booleans())
    return kw


OPTIMIZERS: list[OptimizerInfo] = [
    OptimizerInfo(
        "sgd", "SGD",
        parity=_sgd_parity(),
        structural=("momentum", "dampening"),
        variants=dict(lr=0.05, momentum=0.9),
        invalid=[dict(lr=-0.1), dict(momentum=-0.5), dict(weight_decay=-1e-3),
                 dict(nesterov=True), dict(nesterov=True, momentum=0.9, dampening=0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.05, momentum=0.9, weight_decay=0.1),
        float32_kwargs=dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        state_dict=[{"lr": 0.1}, {"lr": 0.1, "momentum": 0.9}],
        property_kwargs=_sgd_kwargs(),
    ),
    OptimizerInfo(
        "adam", "Adam",
        parity=_adam_parity(True),
        variants=dict(lr=0.01, amsgrad=True),
        invalid=[dict(lr=-0.1), dict(eps=-1.0), dict(betas=(1.0, 0.999)),
                 dict(betas=(0.9, -0.1)), dict(weight_decay=-0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.02, amsgrad=True, weight_decay=0.1),
        float32_kwargs=dict(lr=0.01, amsgrad=True, weight_decay=0.01),
        state_dict=[{"lr": 0.01, "amsgrad": True}],
        property_kwargs=_adam_kwargs(),
    ),
    OptimizerInfo(
        "adamw", "AdamW",
        parity=_adam_parity(False),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-1.0), dict(betas=(0.9, 1.5))],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.02),
        float32_kwargs=dict(lr=0.01),
        state_dict=[{"lr": 0.01}],
        property_kwargs=_adam_kwargs(decoupled=False),
    ),
    OptimizerInfo(
        "rmsprop", "RMSprop",
        parity=[dict()] + grid(
            lr=[0.01], alpha=[0.9], eps=[1e-6], weight_decay=[0.0, 0.1], momentum=[0.0, 0.8],
            centered=[False, True], maximize=[False, True]),
        structural=("momentum",),
        state_in_slots=True,
        scheduled=(dict(centered=True), dict(lr=wave(0.01, 0.5), alpha=wave(0.9, 0.05),
                                             momentum=wave(0.5, 0.5),
                                             weight_decay=wave(0.1, 1))),
        variants=dict(lr=0.01, centered=True, momentum=0.5),
        invalid=[dict(lr=-0.1), dict(eps=-0.1), dict(momentum=-0.1), dict(weight_decay=-0.1),
                 dict(alpha=-0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.01, momentum=0.5, centered=True),
        float32_kwargs=dict(lr=0.01, momentum=0.5, centered=True),
        state_dict=[{"lr": 0.01, "momentum": 0.5, "centered": True}],
        # Centered with alpha near 0: the variance square_avg - grad_avg**2 is alpha*(1-alpha)
        # g**2 after a cancellation of -log2(alpha) bits (all of them at alpha = 0), and torch's
        # own value there depends on its CPU kernel: ATen's AVX2/AVX-512 addcmul contracts
        # into an FMA (the product's rounding error survives: -7.0e-19 for g**2 ~ 0.016),
        # its DEFAULT kernel does not (0.0), measured with ATEN_CPU_CAPABILITY. Drawn only
        # where at most 7 bits cancel (alpha >= 0.01), which the 1e-9 tolerance absorbs.
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, alpha=_unit, eps=_eps, weight_decay=_wd,
            momentum=st.one_of(st.just(0.0), _unit), centered=st.booleans(),
            maximize=st.booleans())).filter(
                lambda kw: not (kw["centered"] and kw["alpha"] < 0.01)),
    ),
    OptimizerInfo(
        "adagrad", "Adagrad",
        parity=[dict()] + grid(
            lr=[0.1], lr_decay=[0.0, 0.05], weight_decay=[0.0, 0.1],
            initial_accumulator_value=[0.0, 0.5], eps=[1e-8], maximize=[False, True]),
        structural=("initial_accumulator_value",),  # read by init only
        state_in_slots=True,
        scheduled=(dict(), dict(lr=wave(0.1, 0.5), lr_decay=wave(0.05, 1), eps=wave(1e-3, 0.5))),
        variants=dict(lr=0.1),
        invalid=[dict(lr=-0.1), dict(lr_decay=-0.1), dict(weight_decay=-0.1),
                 dict(initial_accumulator_value=-0.1), dict(eps=-0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.1, lr_decay=0.01),
        float32_kwargs=dict(lr=0.1, lr_decay=0.01),
        state_dict=[{"lr": 0.1}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, lr_decay=st.floats(0.0, 0.1), weight_decay=_wd,
            initial_accumulator_value=st.floats(0.0, 1.0), eps=_eps, maximize=st.booleans())),
    ),
    OptimizerInfo(
        "adadelta", "Adadelta",
        parity=[dict()] + grid(
            lr=[1.0, 0.3], rho=[0.9, 0.5], eps=[1e-6, 1e-4], weight_decay=[0.0, 0.1],
            maximize=[False, True]),
        state_in_slots=True,
        scheduled=(dict(), dict(lr=wave(0.5, 0.5), rho=wave(0.8, 0.2))),
        variants=dict(lr=1.0),
        invalid=[dict(lr=-0.1), dict(rho=1.5), dict(eps=-0.1), dict(weight_decay=-0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.5, weight_decay=0.1),
        float32_kwargs=dict(lr=1.0),
        state_dict=[{}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=st.floats(1e-3, 2.0), rho=st.floats(0.0, 1.0), eps=_eps, weight_decay=_wd,
            maximize=st.booleans())),
    ),
    OptimizerInfo(
        "nadam", "NAdam",
        parity=[dict()] + grid(
            lr=[0.01], betas=[(0.8, 0.95)], weight_decay=[0.0, 0.1],
            momentum_decay=[4e-3, 0.05], decoupled_weight_decay=[False, True],
            maximize=[False, True]),
        state_in_slots=True,
        scheduled=(dict(decoupled_weight_decay=True),
                   dict(lr=wave(0.01, 0.5), betas=(wave(0.8, 0.1), 0.95),
                        momentum_decay=wave(0.01, 0.5), weight_decay=wave(0.1, 1))),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(eps=-0.1), dict(betas=(1.0, 0.9)), dict(betas=(0.9, 1.0)),
                 dict(weight_decay=-0.1), dict(momentum_decay=-0.1)],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.02),
        float32_kwargs=dict(lr=0.01),
        state_dict=[{}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, betas=_betas, eps=_eps, weight_decay=_wd,
            momentum_decay=st.floats(0.0, 0.01), decoupled_weight_decay=st.booleans(),
            maximize=st.booleans())),
    ),
    OptimizerInfo(
        "rprop", "Rprop",
        parity=[dict()] + grid(
            lr=[0.01, 0.2], etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-3, 0.05)],
            maximize=[False, True]),
        state_in_slots=True,
        # lr only seeds Rprop's step sizes: later lr values change nothing, in torch as here.
        scheduled=(dict(), dict(lr=wave(0.05, 0.5), etas=(wave(0.4, 0.2), wave(1.3, 0.1)),
                                step_sizes=(1e-3, wave(0.05, 0.5)))),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(etas=(1.5, 1.2)), dict(etas=(0.5, 0.9))],
        tensor_lr=True,
        supports_complex=True,
        complex_kwargs=dict(lr=0.02),
        float32_kwargs=dict(lr=0.01),
        state_dict=[{}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, etas=st.tuples(st.floats(0.1, 0.99), st.floats(1.01, 2.0)),
            step_sizes=st.tuples(st.floats(1e-7, 1e-3), st.floats(0.01, 50.0)),
            maximize=st.booleans())),
    ),
    OptimizerInfo(
        "adamax", "Adamax",
        parity=[dict()] + grid(
            lr=[0.01], betas=[(0.8, 0.95)], eps=[1e-8, 1e-3], weight_decay=[0.0, 0.1],
            maximize=[False, True]),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(eps=-0.1), dict(betas=(1.0, 0.9)), dict(weight_decay=-0.1)],
        supports_complex=True,
        complex_kwargs=dict(lr=0.02),
        state_dict=[{}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, betas=_betas, eps=_eps, weight_decay=_wd, maximize=st.booleans())),
    ),
    OptimizerInfo(
        "asgd", "ASGD",
        parity=[dict()] + grid(
            lr=[0.05], lambd=[1e-4, 0.05], alpha=[0.75, 0.5], t0=[1e6, 10.0],
            weight_decay=[0.0, 0.1], maximize=[False, True]),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(weight_decay=-0.1)],
        supports_complex=True,
        complex_kwargs=dict(lr=0.05, t0=5),
        state_dict=[{"t0": 1}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, lambd=st.floats(0.0, 1e-2), alpha=st.floats(0.0, 1.0),
            t0=st.integers(0, 10).map(float), weight_decay=_wd, maximize=st.booleans())),
    ),
    OptimizerInfo(
        "radam", "RAdam",
        parity=[dict()] + grid(
            lr=[0.01], betas=[(0.9, 0.999), (0.5, 0.9)], weight_decay=[0.0, 0.1],
            decoupled_weight_decay=[False, True], maximize=[False, True]),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(eps=-0.1), dict(betas=(0.9, 1.0)), dict(weight_decay=-0.1)],
        supports_complex=True,
        complex_kwargs=dict(lr=0.02),
        state_dict=[{}],
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, betas=_betas, eps=_eps, weight_decay=_wd,
            decoupled_weight_decay=st.booleans(), maximize=st.booleans())),
    ),
    OptimizerInfo(
        "sparse_adam", "SparseAdam",
        parity=[dict(), *grid(lr=[0.01], betas=[(0.8, 0.95)], eps=[1e-8, 1e-4],
                               maximize=[False, True])],
        parity_seed=1,
        parity_shapes=((4, 3), (6,)),
        sparse_grads=True,
        invalid=[dict(lr=-0.1), dict(eps=-0.1), dict(betas=(1.0, 0.9))],
        supports_complex=False,
        property_kwargs=st.fixed_dictionaries(dict(lr=_lr, betas=_betas, eps=_eps)),
    ),
    OptimizerInfo(
        "adafactor", "Adafactor",
        parity=[dict()] + grid(
            lr=[0.01, 0.5], beta2_decay=[-0.8, -0.5], eps=[(None, 1e-3), (1e-6, 1e-2)],
            d=[1.0, 1.5], weight_decay=[0.0, 0.1], maximize=[False, True]),
        parity_seed=2,
        parity_shapes=((4, 3), (2, 3, 5), (6,), ()),
        variants=dict(lr=0.01),
        invalid=[dict(lr=-0.1), dict(beta2_decay=0.5), dict(eps=(-1.0, 1e-3)),
                 dict(eps=(None, -1e-3)), dict(d=0.5), dict(weight_decay=-0.1)],
        supports_complex=False,
        state_dict=[{"lr": 0.05}],
        # torch divides by the number of elements: empty params raise there.
        supports_empty_params=False,
        property_kwargs=st.fixed_dictionaries(dict(
            lr=_lr, beta2_decay=st.floats(-1.0, -0.5),
            eps=st.tuples(st.none(), st.floats(1e-4, 1e-2)), d=st.floats(1.0, 2.0),
            weight_decay=_wd, maximize=st.booleans())),
    ),
    OptimizerInfo(
        "muon", "Muon",
        # Muon's Newton-Schulz iteration runs in bfloat16 with torch's rounding, bit for bit
        # unless XLA's float32 summation order flips a rounding (rare; not with these params).
        parity=[dict()] + grid(
            lr=[0.02], weight_decay=[0.0, 0.1], momentum=[0.9], nesterov=[False, True],
            adjust_lr_fn=[None, "original", "match_rms_adamw"]),
        parity_steps=30,
        parity_tol=1e-10,
        parity_seed=4,
        parity_shapes=((6, 4), (3, 5)),
        invalid=[dict(lr=-0.1), dict(weight_decay=-0.1), dict(momentum=-0.1),
                 dict(adjust_lr_fn="bogus")],
        elementwise=False,
        matrices_only=True,
        supports_complex=False,
    ),
    OptimizerInfo(
        "lbfgs", "LBFGS",
        invalid=[dict(lr=-0.1)],
        elementwise=False,
        scheduled_lr=False,
        needs_closure=True,
    ),
]

BY_NAME = {info.name: info for info in OPTIMIZERS}


def cases(field: str, flag: str | None = None) -> list:
    """``pytest.param(info, kwargs, id=...)`` for each config listed in ``field`` (a list of
    kwargs, or one kwargs dict; entries with none are skipped), for optimizers with ``flag``."""
    out = []
    for info in OPTIMIZERS:
        if flag is not None and not getattr(info, flag):
            continue
        value = getattr(info, field)
        configs = value if isinstance(value, list) else [] if value is None else [value]
        out.extend(pytest.param(info, kw, id=info.id(kw)) for kw in configs)
    ids = [p.id for p in out]
    assert len(set(ids)) == len(ids), f"duplicate test ids in {field}"
    return out


def infos(flag: str, value: Any = True) -> list:
    """``pytest.param(info, id=name)`` for the optimizers whose ``flag`` equals ``value``."""
    return [pytest.param(i, id=i.name) for i in OPTIMIZERS if getattr(i, flag) == value]
