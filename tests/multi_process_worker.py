"""One process of the 2-process data-parallel test (tests/test_multi_process.py).

Usage: python multi_process_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

Every process builds the same dataset, keeps its half of each batch, and trains a small MLP with
optx.adamw under jit on a mesh with one CPU device per process: the global batch is sharded over
the processes and the params replicated, so XLA averages the gradients across processes (gloo
CPU collectives). With NUM_PROCESSES=1 it is the single-process reference on the full batch.
"""

from __future__ import annotations

import sys

import jax

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import optx  # noqa: E402

STEPS, BATCH = 10, 16

rng = np.random.default_rng(0)
xs = rng.normal(size=(STEPS, BATCH, 6)).astype(np.float32)
ys = np.sin(xs.sum(-1, keepdims=True)).astype(np.float32)
params = {
    "w1": jnp.asarray(rng.normal(size=(6, 8)) * 0.5, jnp.float32),
    "b1": jnp.zeros((8,), jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(8, 1)) * 0.5, jnp.float32),
}

mesh = Mesh(np.array(jax.devices()), ("data",))
replicated = NamedSharding(mesh, P())
batch_sharding = NamedSharding(mesh, P("data"))
tx = optx.adamw(lr=0.01, weight_decay=0.01)


def loss_fn(p, x, y):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] - y) ** 2)


@jax.jit
def step(p, s, x, y):
    g = jax.grad(loss_fn)(p, x, y)  # mean over the global batch: an all-reduce across processes
    u, s = tx.update(g, s, p)
    return optx.apply_updates(p, u), s


initial = {f"init_{k}": np.asarray(v) for k, v in params.items()}
params = jax.device_put(params, replicated)
state = jax.jit(tx.init, out_shardings=replicated)(params)
half = BATCH // num_processes
for k in range(STEPS):
    local = slice(process_id * half, (process_id + 1) * half)  # this process's half of the data
    x = jax.make_array_from_process_local_data(batch_sharding, xs[k, local])
    y = jax.make_array_from_process_local_data(batch_sharding, ys[k, local])
    params, state = step(params, state, x, y)

result = {k: np.asarray(v.addressable_data(0)) for k, v in params.items()}
np.savez(out, **result, **initial)
if num_processes > 1:
    jax.distributed.shutdown()
