"""torch's ``TestOptimRenewed`` cases on construction, errors and printing, run on torch and on
``optx.optim`` with the same calls (issue 26.6). Configurations and error inputs come from
torch's own ``optim_db`` (see ``renewed.py``).

Ported:
- ``test_errors``: every error input of ``optim_db`` raises (or warns) in optx with torch's
  exception type and message, at the same call (construction or ``step``). An input with
  ``params=None`` runs twice: as given (torch validates the hyperparameters before it looks at
  the params) and with one real parameter.
- ``test_optimizer_can_be_printed``: ``repr`` equals torch's for every configuration of
  ``optim_db``, with each implementation switch on (``_get_optim_inputs_including_global_cliquey
  _kwargs``), which optx accepts and ignores.
- torch's signatures: each configuration given positionally, as far as torch's signature
  allows (``SGD(params, 0.1, 0.9)``), prints as torch's (``test_positional_args``).
- torch's errors that are limitations of its ``foreach`` kernels (a tensor ``lr`` or ``betas``
  with ``foreach=True``): optx accepts the switch, so the same call steps as torch does with the
  switch off (``test_foreach_only_errors_are_accepted``).

Not ported, and why:
- the error input "invalid param type" (one bare tensor as ``params``): a bare array is a
  one-leaf pytree, which optx takes as params (API.md section 4).
- "dense params required" (SparseAdam with sparse parameters): JAX has no sparse arrays here.
- ``test_optim_infos_do_not_specify_global_cliquey_kwargs``: checks torch's database itself.
"""

from __future__ import annotations

import inspect
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from renewed import (
    DB,
    NAMES,
    OptimizerErrorEnum,
    Pair,
    configs,
    mode,
    to_optx,
)
from torch_versions import as_installed

import optx.optim as O

_NOT_APPLICABLE = ("invalid param type", "dense params required")
_FOREACH_ONLY = "foreach=True"
_DUPLICATES = "a param group cannot have duplicate parameters"
# The cases every optimizer has alike run in one test per kind (see _fails_for).
DUPLICATES = "duplicate parameters"
ERROR_ORDER = "a hyperparameter error with params=None"
_XFAIL = {
    "complex not supported":
        "SparseAdam's complex-params message lacks torch's '[[group, param]]' indices",
    "betas must be either both floats or both Tensors":
        "betas mixing a float and an array: torch refuses them, optx accepts them",
}


def _error_inputs():
    """``(name, index, error input)`` for each of optim_db's error inputs on the CPU."""
    for name in NAMES:
        info = DB[name]
        if info.optim_error_inputs_func is not None:
            inputs = info.optim_error_inputs_func(device="cpu", dtype=torch.float64)
            yield from ((name, i, ei) for i, ei in enumerate(inputs))


def _error_cases():
    """``(name, index, where, marks)`` of every applicable error input; ``where`` is
    ``as-given`` or, for ``params=None``, also ``with-params``."""
    out = []
    for name, i, ei in _error_inputs():
        desc = ei.optimizer_error_input.desc
        if desc.startswith(_NOT_APPLICABLE) or _FOREACH_ONLY in ei.error_regex:
            continue
        for where in ("as-given", "with-params"):
            if where == "as-given" or ei.optimizer_error_input.params is None:
                out.append((name, i, where, desc))
    return out


def _fails_for(case):
    """Why a case fails (a deliberate difference, :data:`_XFAIL`), or the kind of input every
    optimizer has alike (:data:`DUPLICATES`, :data:`ERROR_ORDER`: those run in one test per
    kind); None for the others."""
    name, i, where, desc = case
    if desc in _XFAIL:
        return _XFAIL[desc]
    if desc == _DUPLICATES:
        return DUPLICATES
    regex = DB[name].optim_error_inputs_func(device="cpu", dtype=torch.float64)[i].error_regex
    if (where == "as-given" and "Tensor lr must be 1-element" not in regex
            and DB[name].optim_error_inputs_func(device="cpu", dtype=torch.float64)[i]
            .optimizer_error_input.params is None):
        return ERROR_ORDER
    return None


_CASES = _error_cases()


def _ids(case):
    name, i, where, desc = case
    return f"{name}-{i}-{re.sub(r'[^a-zA-Z0-9]+', '_', desc).strip('_')[:40]}-{where}"


def _outcome(cls, params, kwargs, error_input, grads=None):
    """What the call raises or warns: ``(kind, type name, message)``."""
    step = error_input.error_on == OptimizerErrorEnum.STEP_ERROR
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opt = cls(params, **kwargs)
            if step:
                opt.step() if grads is None else opt.step(grads)
        except Exception as e:  # noqa: BLE001 - the exception is what is compared
            return ("raises", type(e).__name__, str(e))
    warned = [w for w in caught if issubclass(w.category, Warning)
              and issubclass(error_input.error_type, Warning)
              and issubclass(w.category, error_input.error_type)]
    if warned:
        return ("warns", warned[0].category.__name__, str(warned[0].message))
    return ("nothing", None, None)


def _neutral(message):
    # torch names shapes as torch.Size([2, 3]); optx as the tuple (2, 3).
    return re.sub(r"torch\.Size\(\[([^\]]*)\]\)", r"(\1)", message)


def _check_error(name, index, where):
    info = DB[name]
    error_input = info.optim_error_inputs_func(device="cpu", dtype=torch.float64)[index]
    given = error_input.optimizer_error_input
    params = given.params
    if params is None and where == "with-params":
        params = [torch.nn.Parameter(torch.randn(2, 3))]
    expected = _outcome(info.optim_cls, params, given.kwargs, error_input)
    kind = "warns" if issubclass(error_input.error_type, Warning) else "raises"
    assert expected[0] == kind and expected[1] == error_input.error_type.__name__
    assert re.search(error_input.error_regex, expected[2]), expected

    x_params = to_optx(params)
    grads = None
    if error_input.error_on == OptimizerErrorEnum.STEP_ERROR:
        grads = [to_optx(p.grad) for p in params]
    got = _outcome(getattr(O, name), x_params, to_optx(given.kwargs), error_input, grads)
    assert got[:2] == expected[:2], (name, got, expected)
    assert got[2] == _neutral(expected[2]), name


@pytest.mark.parametrize("name,index,where", [
    pytest.param(*c[:3], id=_ids(c), marks=[pytest.mark.xfail(strict=True, reason=_fails_for(c))]
                 if _fails_for(c) else [])
    for c in _CASES if _fails_for(c) not in (DUPLICATES, ERROR_ORDER)])
def test_errors(name, index, where):
    _check_error(name, index, where)


def test_errors_duplicate_params():
    # The input "a param group cannot have duplicate parameters", of every optimizer.
    for case in _CASES:
        if _fails_for(case) == DUPLICATES:
            _check_error(*case[:3])


def test_errors_with_params_none():
    # Each hyperparameter error input as given, with params=None: torch checks the
    # hyperparameters first. (test_errors runs them with a parameter.)
    for case in _CASES:
        if _fails_for(case) == ERROR_ORDER:
            _check_error(*case[:3])


def _torch_printed(opt):
    # A tensor hyperparameter is a Python number in optx (torch's _to_scalar of it).
    text = repr(opt)
    for group in opt.param_groups:
        for key, value in group.items():
            if isinstance(value, torch.Tensor):
                text = text.replace(f"    {key}: {value}", f"    {key}: {value.item()}")
    return text


@pytest.mark.parametrize("name", NAMES)
def test_optimizer_can_be_printed(name):
    info = DB[name]
    t_params = [torch.nn.Parameter(torch.randn(2, 3)) for _ in range(2)]
    x_params = to_optx(t_params)
    for desc, kwargs in configs(name, cliquey=True):
        torch_opt = info.optim_cls(t_params, **kwargs)
        optx_opt = getattr(O, name)(x_params, **to_optx(kwargs))
        assert as_installed(name, repr(optx_opt)) == _torch_printed(torch_opt), desc


def _positional(cls, kwargs):
    """``kwargs`` as torch's ``cls`` takes them positionally: the longest prefix of its
    positional-or-keyword arguments that ``kwargs`` reaches, defaults filling the gaps."""
    order = [p for p in inspect.signature(cls).parameters.values()
             if p.kind == p.POSITIONAL_OR_KEYWORD][1:]  # after params
    last = max([i for i, p in enumerate(order) if p.name in kwargs], default=-1)
    args = [kwargs.get(p.name, p.default) for p in order[:last + 1]]
    return args, {k: v for k, v in kwargs.items() if k not in {p.name for p in order}}


def test_positional_args():
    # Every optimizer and each of its configurations, by torch's positional arguments.
    t_params = [torch.nn.Parameter(torch.randn(2, 3))]
    x_params = to_optx(t_params)
    for name in NAMES:
        info = DB[name]
        for desc, kwargs in configs(name):
            args, rest = _positional(info.optim_cls, kwargs)
            if not args:
                continue
            torch_opt = info.optim_cls(t_params, *args, **rest)
            optx_opt = getattr(O, name)(x_params, *to_optx(args), **to_optx(rest))
            assert as_installed(name, repr(optx_opt)) == _torch_printed(torch_opt), (name, desc)


@pytest.mark.parametrize("name,index", [pytest.param(n, i, id=f"{n}-{i}")
                                        for n, i, ei in _error_inputs()
                                        if _FOREACH_ONLY in ei.error_regex])
def test_foreach_only_errors_are_accepted(name, index):
    error_input = DB[name].optim_error_inputs_func(device="cpu", dtype=torch.float64)[index]
    kwargs = dict(error_input.optimizer_error_input.kwargs)
    assert kwargs.pop("foreach") is True
    # torch steps this configuration with the switch off; optx takes it with the switch on.
    with mode(name, 1):
        pair = Pair(name, [np.ones((2, 3))], **kwargs, foreach=False)
        pair.optx = getattr(O, name)([jnp.ones((2, 3))], **to_optx(kwargs), foreach=True)
        pair.step()
        pair.check()
