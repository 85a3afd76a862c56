"""One process of the 2-process tests (tests/test_multi_process.py).

Usage: python multi_process_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz {jit,zero}

Every process builds the same dataset, keeps its half of each batch, and trains a small MLP with
AdamW on a mesh with one CPU device per process: the global batch is sharded over the processes,
so XLA averages the gradients across processes (gloo CPU collectives). With NUM_PROCESSES=1 it is
the single-process reference on the full batch.

* ``jit``: ``optx.adamw`` under ``jax.jit``, params and state replicated.
* ``zero``: ``optx.optim.ZeroRedundancyOptimizer(params, optx.optim.AdamW, mesh)`` with a StepLR
  scheduler: with two processes each keeps half of the AdamW state. Also writes the full state
  gathered by ``state_dict()``, which must equal the single-process run's.
"""

from __future__ import annotations

import sys

import jax

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
mode = sys.argv[5]
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
    "w1": np.asarray(rng.normal(size=(6, 8)) * 0.5, np.float32),
    "b1": np.zeros((8,), np.float32),
    "w2": np.asarray(rng.normal(size=(8, 1)) * 0.5, np.float32),
}
result = {f"init_{k}": v for k, v in params.items()}

mesh = Mesh(np.array(jax.devices()), ("data",))
batch_sharding = NamedSharding(mesh, P("data"))
half = BATCH // num_processes


def loss_fn(p, x, y):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] - y) ** 2)


def batches():
    rows = slice(process_id * half, (process_id + 1) * half)  # this process's half of the data
    for k in range(STEPS):
        x = jax.make_array_from_process_local_data(batch_sharding, xs[k, rows])
        y = jax.make_array_from_process_local_data(batch_sharding, ys[k, rows])
        yield x, y


if mode == "jit":
    replicated = NamedSharding(mesh, P())
    tx = optx.adamw(lr=0.01, weight_decay=0.01)

    @jax.jit
    def step(p, s, x, y):
        g = jax.grad(loss_fn)(p, x, y)  # mean over the global batch: an all-reduce
        u, s = tx.update(g, s, p)
        return optx.apply_updates(p, u), s

    params = jax.device_put(params, replicated)
    state = jax.jit(tx.init, out_shardings=replicated)(params)
    for x, y in batches():
        params, state = step(params, state, x, y)
else:
    grad_fn = jax.jit(jax.grad(loss_fn))
    opt = optx.optim.ZeroRedundancyOptimizer(params, optx.optim.AdamW, mesh, lr=0.01,
                                             weight_decay=0.01)
    sched = optx.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    # Each process holds half of every split slot (w1 along its 8 columns, b1, w2 along its rows).
    local = opt.opt_state.slots["exp_avg"]["w1"].addressable_shards
    assert [s.data.shape for s in local] == [(6, 8 // num_processes)], local
    for x, y in batches():
        opt.step(grad_fn(opt.params, x, y))  # mean over the global batch: replicated grads
        sched.step()
    opt.consolidate_state_dict(to=0)
    for i, entry in opt.state_dict()["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            result[f"state_{i}_{key}"] = entry[key]
    params = opt.params

result.update({k: np.asarray(v.addressable_data(0)) for k, v in params.items()})
np.savez(out, **result)
if num_processes > 1:
    jax.distributed.shutdown()
