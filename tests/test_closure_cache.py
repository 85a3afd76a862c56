"""opt.step(closure) with a closure defined inside the loop (torch's idiom) compiles once: the
closure is cached by its code and static captures, its captured arrays passed to the jit as
arguments (optx.optim.closure_cache)."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import optx.optim as O

P0 = {"w": np.array([0.5, -1.0, 0.25]), "b": np.array(0.1)}
BATCHES = [
    (np.random.default_rng(k).normal(size=(4, 3)), np.random.default_rng(k + 9).normal(size=4))
    for k in range(4)
]


def _loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _params():
    return {k: jnp.asarray(v) for k, v in P0.items()}


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _make(kind):
    if kind == "sgd":
        return O.SGD(_params(), lr=0.1, momentum=0.9)
    if kind == "lbfgs":
        return O.LBFGS(_params(), lr=0.5, max_iter=4, history_size=3)
    return O.LBFGS(_params(), lr=1, max_iter=4, history_size=3, line_search_fn="strong_wolfe")


def _loop_new_closure_each_step(kind, batches, traces):
    opt = _make(kind)
    losses = []
    for x, y in batches:
        x, y = jnp.asarray(x), jnp.asarray(y)

        def closure(params):
            traces.append(1)
            opt.zero_grad()  # captures the optimizer too, as torch code does
            return _loss(params, x, y)

        losses.append(float(opt.step(closure)))
        traces.append("step")
    return opt, losses


def _traced_only_in_first_step(traces):
    steps = "".join("s" if t == "step" else "t" for t in traces).split("s")[:-1]
    assert steps[0] and not any(steps[1:]), steps


@pytest.mark.parametrize("kind", ["sgd", "lbfgs", "lbfgs-strong-wolfe"])
def test_closure_in_loop_compiles_once_and_matches_one_reused_closure(kind):
    traces = []
    batches = [BATCHES[0]] * 3
    opt, losses = _loop_new_closure_each_step(kind, batches, traces)
    # Traced in the first step only: for the value and gradient (and inside LBFGS's update).
    _traced_only_in_first_step(traces)
    assert opt.trace_count == 1

    ref = _make(kind)
    x, y = map(jnp.asarray, BATCHES[0])
    closure = functools.partial(_loss, x=x, y=y)  # one object, keyed by identity
    ref_losses = [float(ref.step(closure)) for _ in batches]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-13)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
        _np(opt.params), _np(ref.params))

    def reused(params):
        return _loss(params, x, y)

    same = _make(kind)
    same_losses = [float(same.step(reused)) for _ in batches]
    assert same_losses == losses  # the same computation: bit for bit
    jax.tree_util.tree_map(np.testing.assert_array_equal, _np(same.params), _np(opt.params))


@pytest.mark.parametrize("kind", ["sgd", "lbfgs-strong-wolfe"])
def test_new_batch_each_step_matches_torch(kind):
    traces = []
    opt, losses = _loop_new_closure_each_step(kind, BATCHES, traces)
    _traced_only_in_first_step(traces)

    w = torch.tensor(P0["w"], requires_grad=True)
    b = torch.tensor(P0["b"], requires_grad=True)
    if kind == "sgd":
        topt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9)
    else:
        topt = torch.optim.LBFGS([w, b], lr=1, max_iter=4, history_size=3,
                                 line_search_fn="strong_wolfe")
    tlosses = []
    for x, y in BATCHES:
        x, y = torch.tensor(x), torch.tensor(y)

        def closure():
            topt.zero_grad()
            loss = torch.mean((x @ w + b - y) ** 2)
            loss.backward()
            return loss

        tlosses.append(float(topt.step(closure).detach()))
    np.testing.assert_allclose(losses, tlosses, rtol=1e-10)
    np.testing.assert_allclose(opt.params["w"], w.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(opt.params["b"], b.detach().numpy(), rtol=1e-10)


def test_captured_python_scalar_recompiles_with_its_value():
    traces = []
    opt = O.SGD(_params(), lr=0.1)
    expected = _params()
    x, y = map(jnp.asarray, BATCHES[0])
    for scale in [1.0, 2.0, 2.0, 3]:
        def closure(params):
            traces.append(1)
            return scale * _loss(params, x, y)

        g = jax.grad(lambda p: scale * _loss(p, x, y))(expected)
        expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, expected, g)
        opt.step(closure)
    assert len(traces) == 3  # 1.0, 2.0 (reused), 3 (an int: a new key)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), _np(opt.params),
        _np(expected))


def test_captured_array_of_new_shape_retraces_with_correct_values():
    traces = []
    opt = O.SGD(_params(), lr=0.1)
    expected = _params()
    rng = np.random.default_rng(0)
    for n in [4, 4, 6]:
        batch = {"x": jnp.asarray(rng.normal(size=(n, 3))), "y": jnp.asarray(rng.normal(size=n))}

        def closure(params, batch=batch):  # a default argument, a dict pytree
            traces.append(1)
            return _loss(params, batch["x"], batch["y"])

        g = jax.grad(_loss)(expected, batch["x"], batch["y"])
        expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, expected, g)
        opt.step(closure)
    assert len(traces) == 2
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), _np(opt.params),
        _np(expected))


class _Closure:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __call__(self, params):
        return _loss(params, self.x, self.y)


@pytest.mark.parametrize("make", [
    lambda x, y: functools.partial(_loss, x=x, y=y),
    _Closure,
    lambda x, y: _Closure(x, y).__call__,
])
@pytest.mark.parametrize("kind", ["sgd", "lbfgs"])
def test_other_callables_are_keyed_by_identity(make, kind):
    opt, ref = _make(kind), _make(kind)
    for x, y in BATCHES[:2]:
        x, y = jnp.asarray(x), jnp.asarray(y)
        loss = opt.step(make(x, y))
        ref_loss = ref.step(lambda p: _loss(p, x, y))
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13), _np(opt.params),
        _np(ref.params))


def test_closure_needing_a_captured_value_while_tracing_falls_back():
    """int(n) of a captured array worked when it was a constant; it still does."""
    opt = O.SGD(_params(), lr=0.1)
    x, y = map(jnp.asarray, BATCHES[0])
    for n in [2, 3, 3]:
        count = jnp.asarray(n)

        def closure(params):
            k = int(count)
            return _loss(params, x[:k], y[:k])

        opt.step(closure)
    expected = _params()
    for n in [2, 3, 3]:
        g = jax.grad(_loss)(expected, x[:n], y[:n])
        expected = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, expected, g)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), _np(opt.params),
        _np(expected))


def test_captured_list_keeps_its_identity():
    opt = O.SGD(_params(), lr=0.1)
    seen = []
    x, y = map(jnp.asarray, BATCHES[0])

    def closure(params):
        seen.append(1)
        return _loss(params, x, y)

    opt.step(closure)
    assert seen == [1]


def test_zero_arg_closure_still_a_clear_error():
    opt = O.SGD(_params(), lr=0.1)
    with pytest.raises(TypeError, match="the closure must take the params"):
        opt.step(lambda: 0.0)


SCRIPT = """
for x, y in batches:
    def closure(params):
        traces.append(1)
        return loss_fn(params, x, y)

    losses.append(float(opt.step(closure)))
"""


@pytest.mark.parametrize("kind", ["sgd", "lbfgs"])
def test_closure_at_a_scripts_top_level_reads_the_current_batch(kind):
    """At a script's top level the batch is a global of the closure, not a cell."""
    batches = [tuple(map(jnp.asarray, b)) for b in BATCHES]
    namespace = {"batches": batches, "traces": [], "losses": [], "opt": _make(kind),
                 "loss_fn": _loss}
    exec(SCRIPT, namespace)
    ref = _make(kind)
    ref_losses = [float(ref.step(functools.partial(_loss, x=x, y=y))) for x, y in batches]
    np.testing.assert_allclose(namespace["losses"], ref_losses, rtol=1e-13)
    assert namespace["opt"].trace_count == 1


# Values the closure reads that change between steps, in place: torch re-reads them at every
# call, so a compiled closure must never reuse the value of its first trace.
class _Holder:
    def __init__(self, s):
        self.s = s


def _helper_reading_a_global(params, x, y):
    return _SCALE_GLOBAL * _loss(params, x, y)


_SCALE_GLOBAL = 1.0


def _mutating_loops():
    """(name, setup) pairs: setup() -> (closure, set_scale)."""
    x, y = map(jnp.asarray, BATCHES[0])

    def list_box():
        box = [1.0]
        return (lambda p: box[0] * _loss(p, x, y)), lambda v: box.__setitem__(0, v)

    def dict_box():
        cfg = {"w": 1.0}
        return (lambda p: cfg["w"] * _loss(p, x, y)), lambda v: cfg.__setitem__("w", v)

    def nested_list():
        cfg = {"scales": [[1.0, 0.5]], "name": "a"}

        def set_scale(v):
            cfg["scales"][0][0] = v

        return (lambda p: cfg["scales"][0][0] * _loss(p, x, y)), set_scale

    def attribute():
        m = _Holder(1.0)
        return (lambda p: m.s * _loss(p, x, y)), lambda v: setattr(m, "s", v)

    def list_with_array():  # split into arrays (dynamic) and floats (in the key)
        box = [x, 1.0]
        return (lambda p: box[1] * _loss(p, box[0], y)), lambda v: box.__setitem__(1, v)

    def nested_closure():
        box = [1.0]

        def scale():
            return box[0]

        return (lambda p: scale() * _loss(p, x, y)), lambda v: box.__setitem__(0, v)

    def helper_global():
        def set_scale(v):
            global _SCALE_GLOBAL
            _SCALE_GLOBAL = v

        return (lambda p: _helper_reading_a_global(p, x, y)), set_scale

    def partial_with_object():
        m = _Holder(1.0)
        fn = functools.partial(lambda p, m: m.s * _loss(p, x, y), m=m)
        return fn, lambda v: setattr(m, "s", v)

    def bound_method():
        class Model:
            def __init__(self):
                self.s = 1.0

            def loss(self, p):
                return self.s * _loss(p, x, y)

        m = Model()
        return m.loss, lambda v: setattr(m, "s", v)

    def numpy_in_helper_global():
        # a writable numpy array reached through an object (a constant of the trace)
        m = _Holder(np.array([1.0]))

        def set_scale(v):
            m.s[0] = v

        return (lambda p: jnp.asarray(m.s)[0] * _loss(p, x, y)), set_scale

    return [(f.__name__, f) for f in (list_box, dict_box, nested_list, attribute,
                                       list_with_array, nested_closure, helper_global,
                                       partial_with_object, bound_method,
                                       numpy_in_helper_global)]


@pytest.mark.parametrize("kind", ["sgd", "lbfgs"])
@pytest.mark.parametrize("name,setup", _mutating_loops())
def test_values_mutated_between_steps_are_reread(name, setup, kind):
    closure, set_scale = setup()
    x, y = map(jnp.asarray, BATCHES[0])
    opt, ref = _make(kind), _make(kind)
    losses, ref_losses = [], []
    try:
        for v in [1.0, 5.0, 5.0, 0.5]:
            set_scale(v)
            losses.append(float(opt.step(closure)))
            ref_losses.append(float(ref.step(functools.partial(
                lambda p, v: v * _loss(p, x, y), v=v))))
    finally:
        global _SCALE_GLOBAL
        _SCALE_GLOBAL = 1.0
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-13)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13), _np(opt.params),
        _np(ref.params))


def test_unchanged_mutable_capture_is_not_retraced():
    """Keyed by value, a captured config or object compiles once while it does not change."""
    traces = []
    opt = O.SGD(_params(), lr=0.1)
    x, y = map(jnp.asarray, BATCHES[0])
    cfg = {"w": 2.0, "names": ["a", "b"]}
    m = _Holder(3.0)
    for _ in range(3):
        def closure(params):
            traces.append(1)  # only appended to: a log, keyed by identity
            return cfg["w"] * m.s * _loss(params, x, y)

        opt.step(closure)
    assert len(traces) == 1
    cfg["w"] = 4.0
    opt.step(closure)
    assert len(traces) == 2


def test_closure_reaching_too_much_is_retraced_with_a_warning(monkeypatch):
    from optx.optim import closure_cache
    monkeypatch.setattr(closure_cache, "_MAX_NODES", 5)
    opt = O.SGD(_params(), lr=0.1)
    x, y = map(jnp.asarray, BATCHES[0])
    big = [[float(i)] for i in range(10)]
    traces = []

    def closure(params):
        traces.append(1)
        return big[0][0] * _loss(params, x, y) + 0 * len(big)

    with pytest.warns(RuntimeWarning, match="traced and compiled at every step"):
        opt.step(closure)
        opt.step(closure)
    assert len(traces) == 2


def test_a_closure_recompiled_every_step_warns_once():
    # A captured object whose contents change every step (a trainer's growing history) makes
    # every step a compile: correct, as torch re-reads it, but it must not go unnoticed.
    class Trainer:
        history: list = []

    trainer = Trainer()
    opt = O.SGD({"w": jnp.ones(3)}, lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(7):
            def closure(p):
                return jnp.sum(p["w"] ** 2) * (1 + 0 * len(trainer.history))
            opt.step(closure)
            trainer.history = trainer.history + [step]
    ours = [w for w in caught if "was compiled 5 times" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__
