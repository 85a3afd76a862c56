"""torch code ported by renaming ``torch.optim`` to ``optx.optim`` (issue 15): ``step(closure)``
positional, a torch-style zero-argument closure refused with the fix, ``jax.debug.print`` in the
docs, subclasses that add hyperparameter logic in ``step``, params given as an iterator, and
1-element tensor hyperparameters. Each against torch with the same calls."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx
import optx.optim as O

torch.set_default_dtype(torch.float64)
# torch losses are read with float(), as torch code does.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

X = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
Y = np.array([0.5, -1.0, 2.0])
W0 = np.array([0.3, -0.2])


def _loss_jax(params):
    return jnp.mean((jnp.asarray(X) @ params[0] - jnp.asarray(Y)) ** 2)


def _torch_run(cls, steps, **kw):
    w = torch.tensor(W0, requires_grad=True)
    opt = getattr(torch.optim, cls)([w], **kw)

    def closure():
        opt.zero_grad()
        loss = torch.mean((torch.tensor(X) @ w - torch.tensor(Y)) ** 2)
        loss.backward()
        return loss

    losses = [float(opt.step(closure)) for _ in range(steps)]
    return losses, w.detach().numpy()


@pytest.mark.parametrize("cls,kw", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                    ("LBFGS", {"lr": 1, "max_iter": 5})])
def test_positional_closure_matches_torch(cls, kw):
    """15.1: opt.step(closure), positional, as torch's LBFGS examples call it."""
    t_losses, t_w = _torch_run(cls, 3, **kw)
    opt = getattr(O, cls)([jnp.asarray(W0)], **kw)
    losses = [float(opt.step(_loss_jax)) for _ in range(3)]
    np.testing.assert_allclose(losses, t_losses, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(opt.params[0]), t_w, rtol=1e-10)
    # The keyword form is unchanged.
    opt2 = getattr(O, cls)([jnp.asarray(W0)], **kw)
    assert float(opt2.step(closure=_loss_jax)) == losses[0]


def test_zero_argument_closure_says_what_to_write():
    """15.2: torch's closure (no arguments) gets an error with the closure(params) form."""
    opt = O.SGD([jnp.asarray(W0)], lr=0.1)
    before = np.asarray(opt.params[0]).copy()

    def closure():
        opt.zero_grad()
        return 0.0

    with pytest.raises(TypeError, match=r"closure\(params\) -> loss") as err:
        opt.step(closure)
    assert "opt.step(lambda params: loss_fn(params, x, y))" in str(err.value)
    np.testing.assert_array_equal(np.asarray(opt.params[0]), before)
    opt.step(_loss_jax)  # still usable


def test_step_docstring_documents_debug_print():
    """15.3: print in a closure prints tracers; step's docstring says to use jax.debug.print."""
    doc = inspect.getdoc(O.Optimizer.step)
    assert "jax.debug.print" in doc and "opt.step(closure)" in doc
    assert "jax.debug.print" in inspect.getdoc(O.LBFGS.step)


def test_debug_print_prints_values_every_step(capfd):
    opt = O.SGD([jnp.asarray(W0)], lr=0.1)

    def closure(params):
        loss = _loss_jax(params)
        jax.debug.print("loss={loss}", loss=loss)
        return loss

    losses = [float(opt.step(closure)) for _ in range(2)]
    jax.effects_barrier()
    out = capfd.readouterr().out
    assert out.count("loss=") == 2 and f"loss={losses[1]}" in out


class _TorchWarmupAdam(torch.optim.Adam):
    """A torch-style subclass adding hyperparameter logic (linear warmup) in step."""

    def __init__(self, params, warmup=3, **kw):
        super().__init__(params, **kw)
        self.warmup, self.base, self.t = warmup, kw["lr"], 0

    def step(self, closure=None):
        self.t += 1
        for g in self.param_groups:
            g["lr"] = self.base * min(1.0, self.t / self.warmup)
        return super().step(closure)


class _OptxWarmupAdam(O.Adam):
    """The same subclass, renamed: super().step receives the closure or the grads positionally."""

    def __init__(self, params, warmup=3, **kw):
        super().__init__(params, **kw)
        self.warmup, self.base, self.t = warmup, kw["lr"], 0

    def step(self, closure=None):
        self.t += 1
        for g in self.param_groups:
            g["lr"] = self.base * min(1.0, self.t / self.warmup)
        return super().step(closure)


def test_subclass_adding_hyperparameter_logic_matches_torch():
    """15.5 (optimizers): a subclass calling super().step(closure) or super().step(grads)."""
    t_losses, t_w = _torch_run_cls(_TorchWarmupAdam, 5, lr=0.1)
    opt = _OptxWarmupAdam([jnp.asarray(W0)], lr=0.1)
    losses = [float(opt.step(_loss_jax)) for _ in range(5)]
    np.testing.assert_allclose(losses, t_losses, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(opt.params[0]), t_w, rtol=1e-10)
    # With explicit gradients through the same subclass.
    opt2 = _OptxWarmupAdam([jnp.asarray(W0)], lr=0.1)
    grad = jax.grad(_loss_jax)
    for _ in range(5):
        opt2.step(grad(opt2.params))
    np.testing.assert_allclose(np.asarray(opt2.params[0]), t_w, rtol=1e-10)
    assert opt2.param_groups[0]["lr"] == 0.1


def _torch_run_cls(cls, steps, **kw):
    w = torch.tensor(W0, requires_grad=True)
    opt = cls([w], **kw)

    def closure():
        opt.zero_grad()
        loss = torch.mean((torch.tensor(X) @ w - torch.tensor(Y)) ** 2)
        loss.backward()
        return loss

    return [float(opt.step(closure)) for _ in range(steps)], w.detach().numpy()


def test_params_as_generator_are_materialised():
    """15.8: model.parameters()-style generators, for params and for a group's params."""
    arrays = [np.array([1.0, 2.0]), np.array([[0.5]])]
    grads = [np.array([0.1, -0.2]), np.array([[0.3]])]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    topt = torch.optim.SGD((t for t in ts), lr=0.1)
    for t, g in zip(ts, grads):
        t.grad = torch.tensor(g)
    topt.step()
    opt = O.SGD((jnp.asarray(a) for a in arrays), lr=0.1)
    opt.step([jnp.asarray(g) for g in grads])
    for a, t in zip(opt.params, ts):
        np.testing.assert_array_equal(np.asarray(a), t.detach().numpy())
    grouped = O.SGD([{"params": iter([jnp.asarray(a) for a in arrays]), "lr": 0.1}])
    assert len(grouped.params[0]) == 2
    assert len(O.Adam({"a": jnp.ones(2)}.values()).params) == 1
    with pytest.raises(TypeError, match="ordered collections") as err:
        O.SGD([{"params": {1.0}}], lr=0.1)
    with pytest.raises(TypeError) as terr:
        torch.optim.SGD([{"params": {ts[0]}}], lr=0.1)
    assert str(err.value) == str(terr.value)


OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "NAdam", "Rprop",
              "Adamax", "ASGD", "RAdam", "SparseAdam", "Adafactor", "Muon", "LBFGS"]
_FUNCTIONAL = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop",
               "Adagrad": "adagrad", "Adadelta": "adadelta", "NAdam": "nadam", "Rprop": "rprop",
               "Adamax": "adamax", "ASGD": "asgd", "RAdam": "radam", "SparseAdam": "sparse_adam",
               "Adafactor": "adafactor", "Muon": "muon", "LBFGS": "lbfgs"}


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_multi_element_lr_raises_torch_error(cls):
    """15.9: a multi-element lr raises torch's ValueError in every optimizer, both APIs."""
    with pytest.raises(ValueError) as terr:
        getattr(torch.optim, cls)([torch.zeros(2, 2, requires_grad=True)],
                                  lr=torch.tensor([1e-3, 2e-3]))
    assert str(terr.value) == "Tensor lr must be 1-element"
    with pytest.raises(ValueError, match="^Tensor lr must be 1-element$"):
        getattr(O, cls)([jnp.zeros((2, 2))], lr=jnp.asarray([1e-3, 2e-3]))
    with pytest.raises(ValueError, match="^Tensor lr must be 1-element$"):
        getattr(optx, _FUNCTIONAL[cls])(lr=jnp.asarray([1e-3, 2e-3]))


@pytest.mark.parametrize("cls", OPTIMIZERS)
@pytest.mark.parametrize("make", [lambda v: jnp.asarray(v), lambda v: np.float32(v),
                                  lambda v: jnp.asarray([v]), lambda v: np.asarray([v])],
                         ids=["jnp0d", "np.float32", "jnp(1,)", "np(1,)"])
def test_one_element_lr_is_accepted(cls, make):
    """15.9: 0-d and shape-(1,) arrays for lr, in the adapter and the functional constructor,
    give a scalar hyperparameter of the value torch reads from the tensor."""
    lr = make(1e-2)
    expected = float(np.asarray(lr).reshape(()))
    opt = getattr(O, cls)([jnp.zeros((2, 2))], lr=lr)
    assert opt.param_groups[0]["lr"] == expected
    tx = getattr(optx, _FUNCTIONAL[cls])(lr=lr)
    state = tx.init([jnp.zeros((2, 2))])
    assert state.hyperparams["lr"].shape == ()
    assert float(state.hyperparams["lr"]) == expected


@pytest.mark.parametrize("cls,kw", [
    ("SGD", dict(lr=jnp.asarray([0.1], jnp.float32), momentum=np.float32(0.9),
                 weight_decay=jnp.asarray(1e-2, jnp.float32))),
    ("Adagrad", dict(lr=np.float32(0.1))),
], ids=["SGD", "Adagrad"])
def test_tensor_hyperparameters_match_torch_trajectory(cls, kw):
    """15.9: tensor lr/momentum/weight_decay, float32 tensors as torch users write them: the
    same float64 trajectory as torch, which reads the tensors' float32 values. (Where torch
    keeps a tensor lr or betas in its own float32 tensor arithmetic, as Adam's
    ``lr / bias_correction1`` or Adafactor's ``min(lr, 1/sqrt(t))``, optx does the scalar math
    in float64 as for a Python float.)"""
    tkw = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in kw.items()}
    w0 = np.array([[0.3, -0.2], [0.1, 0.4]])
    w = torch.tensor(w0, requires_grad=True)
    topt = getattr(torch.optim, cls)([w], **tkw)
    opt = getattr(O, cls)([jnp.asarray(w0)], **kw)
    for k in range(4):
        w.grad = torch.tensor(np.sin(w.detach().numpy() * (k + 1)))
        topt.step()
        opt.step([jnp.sin(opt.params[0] * (k + 1))])
    np.testing.assert_allclose(np.asarray(opt.params[0]), w.detach().numpy(), rtol=1e-10)


def test_multi_element_other_hyperparameters_are_named():
    """15.9: beyond lr, torch fails with a RuntimeError ('Boolean value of Tensor ...') for a
    multi-element momentum or beta; optx raises the ValueError naming it, as torch's
    functional adam names betas."""
    with pytest.raises(RuntimeError, match="ambiguous"):
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], momentum=torch.tensor([0.9, 0.8]))
    with pytest.raises(ValueError, match=r"^Tensor momentum must be 1-element$"):
        O.SGD([jnp.zeros(2)], momentum=jnp.asarray([0.9, 0.8]))
    with pytest.raises(ValueError, match=r"^Tensor betas\[1\] must be 1-element$"):
        optx.adam(betas=(0.9, jnp.asarray([0.9, 0.8])))
    with pytest.raises(ValueError, match=r"^Tensor momentum must be 1-element$"):
        optx.muon(momentum=np.asarray([0.9, 0.8]))
    with pytest.raises(ValueError, match=r"^Tensor weight_decay must be 1-element$"):
        optx.adafactor(weight_decay=np.asarray([0.1, 0.2]))
    opt = O.SGD([jnp.zeros(2)], lr=0.1)
    opt.param_groups[0]["lr"] = jnp.asarray([0.5])  # as a scheduler-free torch user might
    opt.step([jnp.ones(2)])
    np.testing.assert_allclose(np.asarray(opt.params[0]), [-0.5, -0.5])


_INT_ARGS = {"max_iter", "max_eval", "history_size", "ns_steps"}


def _as_one_element(v):
    if isinstance(v, tuple):
        return tuple(None if x is None else np.asarray([x], np.float64) for x in v)
    return jnp.asarray([v], jnp.float64)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_every_float_hyperparameter_accepts_one_element_arrays(cls):
    """15.9: every float hyperparameter (and each float in a tuple such as betas) given as a
    shape-(1,) array acts as the float, in the functional constructor and the adapter."""
    ctor = getattr(optx, _FUNCTIONAL[cls])
    floats = {k: p.default for k, p in inspect.signature(ctor).parameters.items()
              if k not in _INT_ARGS and (
                  (isinstance(p.default, (int, float)) and not isinstance(p.default, bool))
                  or (isinstance(p.default, tuple) and p.default
                      and all(isinstance(x, float) or x is None for x in p.default)))}
    assert "lr" in floats
    arrays = {k: _as_one_element(v) for k, v in floats.items()}
    params = [jnp.asarray([[0.3, -0.2], [0.1, 0.4]])]
    grads = [jnp.asarray([[0.5, 0.25], [-1.0, 2.0]])]
    a, b = ctor(**floats), ctor(**arrays)
    sa, sb = a.init(params), b.init(params)
    for x, y in zip(jax.tree_util.tree_leaves(dict(sa.hyperparams)),
                    jax.tree_util.tree_leaves(dict(sb.hyperparams))):
        assert x.shape == y.shape == () and float(x) == float(y)
    if cls != "LBFGS":
        ua, _ = a.update(grads, sa, params)
        ub, _ = b.update(grads, sb, params)
        np.testing.assert_array_equal(np.asarray(ua[0]), np.asarray(ub[0]))
    opt = getattr(O, cls)(params, **arrays)
    for k, v in floats.items():
        assert opt.param_groups[0][k] == v
