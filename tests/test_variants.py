"""chex variants: the same update with jit, without jit and under pmap (replicated state)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from registry import OPTIMIZERS

import optx

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.arange(4.0)}


def grads_at(k):
    return jax.tree_util.tree_map(lambda p: jnp.cos(0.7 * k + p), PARAMS)


def reference(tx, steps=5):
    params, state = PARAMS, tx.init(PARAMS)
    for k in range(steps):
        updates, state = jax.jit(tx.update)(grads_at(k), state, params)
        params = optx.apply_updates(params, updates)
    return params


def _make(info):
    def test(self):
        tx = info.fn(**info.variants)
        expected = reference(tx)

        # chex's pmap variant broadcasts the arguments to every device and returns the first
        # device's result, so all three variants are compared with the same reference.
        @self.variant
        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return optx.apply_updates(params, updates), state

        params, state = PARAMS, tx.init(PARAMS)
        for k in range(5):
            params, state = step(params, state, grads_at(k))
        chex.assert_trees_all_close(params, expected, rtol=1e-12, atol=1e-12)

    test.__name__ = f"test_{info.name}"
    return chex.variants(with_jit=True, without_jit=True, with_pmap=True)(test)


class TestVariants(chex.TestCase):
    for _info in OPTIMIZERS:
        if _info.variants is not None:
            locals()[f"test_{_info.name}"] = _make(_info)
    del _info


def test_pmap_with_mean_gradients_equals_single_device():
    """Replicated state and lax.pmean'd gradients give the single-device result."""
    n = jax.local_device_count()
    assert n == 4
    tx = optx.adam(lr=0.01)
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(n, 8, 3)))

    def loss(p, x):
        return jnp.mean((x @ p["w"] - 1.0) ** 2)

    def step(p, s, x):
        g = jax.lax.pmean(jax.grad(loss)(p, x), "i")
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    p = {"w": jnp.ones(3)}
    def replicate(tree):
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)

    rp, rs = replicate(p), replicate(tx.init(p))
    pstep = jax.pmap(step, axis_name="i")
    sp, ss = p, tx.init(p)
    for _ in range(5):
        rp, rs = pstep(rp, rs, xs)
        g = jax.grad(lambda q: loss(q, xs.reshape(-1, 3)))(sp)
        u, ss = tx.update(g, ss, sp)
        sp = optx.apply_updates(sp, u)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda x: x[0], rp), sp, rtol=1e-12)
