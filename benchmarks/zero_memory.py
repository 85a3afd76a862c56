"""Per-device bytes of Adam's state under ZeRO-1 on 4 forced host devices (issue 18's table).

    python benchmarks/zero_memory.py

For a float32 MLP 784 -> 1024 -> 1024 -> 10 it prints, for each route (``zero_place`` for a
jitted step, ``zero()`` under pmap, ``ZeroRedundancyOptimizer``), the unsharded state bytes,
the largest per-device bytes (summed over the addressable shards) and their ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import collections  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import optx  # noqa: E402
from optx.sharding import zero, zero_place  # noqa: E402

SHAPES = {"w1": (784, 1024), "b1": (1024,), "w2": (1024, 1024), "b2": (1024,),
          "w3": (1024, 10), "b3": (10,)}


def per_device(tree) -> int:
    out: collections.Counter = collections.Counter()
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            out[shard.device] += shard.data.nbytes
    return max(out.values())


def main() -> None:
    n = jax.device_count()
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    state = optx.adam(lr=1e-3).init(params)
    full = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    tx = zero(optx.adam(lr=1e-3), "dev")
    replicated = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), params)
    opt = optx.optim.ZeroRedundancyOptimizer(params, optx.optim.Adam, mesh, lr=1e-3)
    opt.step(jax.tree_util.tree_map(jnp.ones_like, params))
    routes = {
        "jit + `zero_place`": zero_place(state, mesh),
        "pmap + `zero(adam)`": jax.pmap(tx.init, axis_name="dev")(replicated),
        "`ZeroRedundancyOptimizer`": opt.opt_state,
    }
    n_params = sum(int(np.prod(s)) for s in SHAPES.values())
    print(f"Adam, float32 MLP 784-1024-1024-10 ({n_params:,} params), {n} devices\n")
    print("| route | unsharded state | per device | ratio |")
    print("|---|---:|---:|---:|")
    for name, tree in routes.items():
        b = per_device(tree)
        print(f"| {name} | {full:,} B | {b:,} B | {b / full:.5f} |")


if __name__ == "__main__":
    main()
