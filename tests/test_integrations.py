"""optx with the real optax, flax, orbax and equinox: no glue code.

Each test runs the integration and an equivalent reference written with optx alone (or optax
alone) and asserts the two trajectories are bit-identical: interoperability must not change a
single rounding.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from flax.training import train_state

import optx

STEPS = 6


def make_params():
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=(4,)))}


def make_batch():
    rng = np.random.default_rng(1)
    return jnp.asarray(rng.normal(size=(8, 3))), jnp.asarray(rng.normal(size=(8, 4)))


def loss_fn(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def grads_at(params, k):
    """A deterministic gradient that changes every step (large enough for clipping to act)."""
    g = jax.grad(loss_fn)(params, make_batch())
    return jax.tree_util.tree_map(lambda x: 3.0 * x + jnp.cos(k + x), g)


def run(tx, params, steps=STEPS, apply=optx.apply_updates):
    state = tx.init(params)

    @jax.jit
    def step(params, state, k):
        updates, state = tx.update(grads_at(params, k), state, params)
        return apply(params, updates), state

    traj = []
    for k in range(steps):
        params, state = step(params, state, k)
        traj.append(params)
    return traj, state


def assert_same(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def clip_then(tx, max_norm=1.0):
    """Reference for ``chain(clip_by_global_norm, tx)``: clip by hand, then tx on its own."""
    clip = optax.clip_by_global_norm(max_norm)

    def init(params):
        return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        updates, _ = clip.update(updates, clip.init(params), params)
        return tx.update(updates, state, params)

    return optx.GradientTransformation(init, update)


# --- optax.chain <-> optx.chain -------------------------------------------------------------


def test_optx_inside_optax_chain():
    params = make_params()
    chained = optax.chain(optax.clip_by_global_norm(1.0), optx.adam(lr=0.1, amsgrad=True))
    got, state = run(chained, params, apply=optax.apply_updates)
    want, _ = run(clip_then(optx.adam(lr=0.1, amsgrad=True)), params)
    assert_same(got, want)
    # The clip acted (the reference would differ from plain adam otherwise).
    plain, _ = run(optx.adam(lr=0.1, amsgrad=True), params)
    assert not np.array_equal(np.asarray(plain[-1]["w"]), np.asarray(got[-1]["w"]))
    assert float(optx.get_hyperparams(state)["lr"]) == 0.1


def test_optx_inside_optax_chain_with_optax_weight_decay_and_schedule():
    params = make_params()
    # optax.add_decayed_weights computes g + wd * p, torch SGD's coupled decay exactly.
    chained = optax.chain(optax.add_decayed_weights(0.01), optx.sgd(lr=0.1, momentum=0.9))
    got, _ = run(chained, params, apply=optax.apply_updates)
    want, _ = run(optx.sgd(lr=0.1, momentum=0.9, weight_decay=0.01), params)
    assert_same(got, want)


def test_optax_inside_optx_chain():
    params = make_params()
    chained = optx.chain(optax.clip_by_global_norm(1.0), optx.adamw(lr=0.05, weight_decay=0.1))
    got, _ = run(chained, params)
    want, _ = run(clip_then(optx.adamw(lr=0.05, weight_decay=0.1)), params)
    assert_same(got, want)

    chained = optx.chain(optax.add_decayed_weights(0.01), optx.sgd(lr=0.1, nesterov=True,
                                                                   momentum=0.5))
    got, _ = run(chained, params)
    want, _ = run(optx.sgd(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.01), params)
    assert_same(got, want)


def test_optx_chain_passes_extra_args_to_optax_members():
    # optax.contrib.reduce_on_plateau needs update(..., value=loss): optx.chain must forward it.
    params = make_params()
    plateau = optax.contrib.reduce_on_plateau(patience=0, factor=0.5, cooldown=0)
    tx = optx.chain(optx.sgd(lr=0.1), plateau)
    state = tx.init(params)
    grads = grads_at(params, 0)
    update = jax.jit(tx.update)
    for _ in range(3):  # a constant loss is a plateau: the scale halves each time
        updates, state = update(grads, state, params, value=jnp.asarray(1.0))
    assert float(state[1].scale) < 1.0


def test_optax_chain_of_optx_transformations_calls_with_extra_args():
    # optax.chain forwards extra args to members it knows accept them; optx members accept and
    # ignore them, so a loop that always passes value= works.
    params = make_params()
    tx = optax.chain(optx.sgd(lr=0.1), optax.scale(1.0))
    state = tx.init(params)
    updates, _ = tx.update(grads_at(params, 0), state, params, value=jnp.asarray(1.0))
    want, _ = optx.sgd(lr=0.1).update(grads_at(params, 0), optx.sgd(lr=0.1).init(params), params)
    assert_same(updates, want)


# --- flax -----------------------------------------------------------------------------------


def test_flax_train_state():
    params = make_params()
    tx = optx.adamw(lr=lambda c: 0.1 * 0.9**c, weight_decay=0.05)
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)

    @jax.jit
    def step(state, k):
        return state.apply_gradients(grads=grads_at(state.params, k))

    got = []
    for k in range(STEPS):
        state = step(state, k)
        got.append(state.params)
    want, want_state = run(tx, params)
    assert_same(got, want)
    assert int(state.step) == STEPS
    assert_same(state.opt_state, want_state)
    # Reading and changing the lr through the TrainState's opt_state.
    np.testing.assert_allclose(optx.get_hyperparams(state.opt_state)["lr"], 0.1 * 0.9**STEPS)
    state = state.replace(opt_state=optx.set_hyperparams(state.opt_state, lr=0.0,
                                                         weight_decay=0.0))
    before = state.params
    state = step(state, STEPS)
    assert_same(state.params, before)  # lr=0 for this one update: no change


def test_flax_nnx_optimizer():
    model = nnx.Linear(3, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    tx = optx.adam(lr=0.05, betas=(0.8, 0.99))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    batch = make_batch()

    def model_loss(model):
        x, y = batch
        return jnp.mean((model(x) - y) ** 2)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(model_loss)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def grads_of(model):
        return nnx.to_pure_dict(nnx.grad(model_loss)(model))

    @jax.jit
    def ref_step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optx.apply_updates(params, updates), state

    # Reference: optx on the same parameters as a plain pytree of arrays, fed the same gradients.
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    ref_state = tx.init(params)
    losses = []
    for _ in range(STEPS):
        params, ref_state = ref_step(params, ref_state, grads_of(model))
        losses.append(float(train_step(model, optimizer)))
        assert_same(nnx.to_pure_dict(nnx.state(model, nnx.Param)), params)
    assert losses[-1] < losses[0]
    assert int(optimizer.step[...]) == STEPS
    opt_state = nnx.to_pure_dict(nnx.state(optimizer, nnx.OptState))["opt_state"]
    assert int(opt_state["count"]) == STEPS


# --- orbax ----------------------------------------------------------------------------------


def test_orbax_checkpoint_resume_is_bit_identical(tmp_path):
    params = make_params()
    tx = optx.chain(
        optax.clip_by_global_norm(1.0),
        optx.nadam(lr=lambda c: 0.05 * 0.95**c, weight_decay=0.01),
    )
    total, split = 8, 3

    @jax.jit
    def step(params, state, k):
        updates, state = tx.update(grads_at(params, k), state, params)
        return optx.apply_updates(params, updates), state

    def train(params, state, ks):
        for k in ks:
            params, state = step(params, state, k)
        return params, state

    straight = train(params, tx.init(params), range(total))

    mid = train(params, tx.init(params), range(split))
    ckpt_dir = tmp_path / "ckpt"
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(ckpt_dir, {"params": mid[0], "opt_state": mid[1]})
        ckptr.wait_until_finished()
    del mid
    # Restore into a freshly built state's structure, as a new process would.
    abstract = {"params": params, "opt_state": tx.init(params)}
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(ckpt_dir, abstract)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(abstract)
    assert isinstance(restored["opt_state"][1], optx.OptimizerState)
    assert int(restored["opt_state"][1].count) == split
    resumed = train(restored["params"], restored["opt_state"], range(split, total))
    assert_same(resumed, straight)


# --- equinox --------------------------------------------------------------------------------


def test_equinox_filtered_params():
    model = eqx.nn.MLP(3, 4, width_size=5, depth=1, key=jax.random.PRNGKey(0))
    model = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if eqx.is_array(x) else x, model
    )
    batch = make_batch()
    tx = optx.rmsprop(lr=0.01, momentum=0.5, centered=True)

    def model_loss(model, batch):
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    @eqx.filter_jit
    def step(model, state):
        loss, grads = eqx.filter_value_and_grad(model_loss)(model, batch)
        updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, loss

    grads_of = eqx.filter_jit(eqx.filter_grad(model_loss))

    @jax.jit
    def ref_step(leaves, state, grads):
        updates, state = tx.update(grads, state, leaves)
        return optx.apply_updates(leaves, updates), state

    state = tx.init(eqx.filter(model, eqx.is_array))
    # Reference: the same leaves as a plain list, optx only, fed the same gradients.
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))
    ref_state = tx.init(leaves)
    losses = []
    for _ in range(STEPS):
        g = jax.tree_util.tree_leaves(grads_of(model, batch))
        leaves, ref_state = ref_step(leaves, ref_state, g)
        model, state, loss = step(model, state)
        losses.append(float(loss))
        assert_same(jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)), leaves)
    assert losses[-1] < losses[0]
    # optx.apply_updates also accepts the whole module (non-array leaves have None updates).
    updates, _ = tx.update(grads_of(model, batch), state, eqx.filter(model, eqx.is_array))
    assert_same(
        eqx.filter(optx.apply_updates(model, updates), eqx.is_array),
        eqx.filter(eqx.apply_updates(model, updates), eqx.is_array),
    )


def test_optx_chain_mixing_optax_and_optx_extra_args_members():
    # value= reaches optx.reduce_lr_on_plateau through optx.chain, with optax members around it.
    # (optax.chain drops extra args for members that are not optax ExtraArgs transformations,
    # so extra-args optx members belong in optx.chain.)
    params = make_params()
    tx = optx.chain(optax.clip_by_global_norm(1.0), optx.sgd(lr=0.1),
                    optx.reduce_lr_on_plateau(patience=0, factor=0.5))
    state = tx.init(params)
    update = jax.jit(tx.update)
    grads = grads_at(params, 0)
    first, state = update(grads, state, params, value=jnp.asarray(1.0))
    for _ in range(3):  # a constant metric is a plateau: the updates shrink
        updates, state = update(grads, state, params, value=jnp.asarray(1.0))
    assert float(jnp.abs(updates["w"]).max()) < float(jnp.abs(first["w"]).max())
