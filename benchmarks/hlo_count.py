"""Per-leaf instruction count of one jitted update: optx vs optax (with and without
``inject_hyperparams``).

Run from the repository root::

    python benchmarks/hlo_count.py                     # every optimizer, Markdown table
    python benchmarks/hlo_count.py --optimizers adam,sgd_momentum --json out.json

XLA:CPU's compile time grows roughly linearly with the instructions each leaf contributes to
the optimized program, so this deterministic count is the compile-time proxy that does not
depend on machine load. The count is issue 16's definition: the instructions (one per line of
every computation, fused ones included) of
``jax.jit(step, donate_argnums=(0, 1)).lower(...).compile().as_text()`` for ``LEAVES_HI``
float32 leaves minus that for ``LEAVES_LO``, divided by the difference, where ``step`` is
``update`` followed by ``apply_updates``.

Columns:

* ``optx``: optx with torch's defaults otherwise (``weight_decay=0`` except AdamW's 1e-2). Its
  hyperparameters are runtime values; a constant 0 where torch branches on zero
  (``if weight_decay != 0``, SGD's ``dampening``) leaves the branch out, as torch skips it;
* ``optx_wd``: the same with a nonzero ``weight_decay=1e-2`` (a runtime value, torch's branch
  in), the like-for-like row of ``optax_inject_wd``;
* ``optax``: optax's own optimizer with its hyperparameters baked in as constants;
* ``optax_inject``: the same under ``optax.inject_hyperparams``, so its hyperparameters are
  runtime values as optx's are (a new value does not recompile): ``optx``'s peer;
* ``optax_inject_wd``: that, plus the runtime weight decay torch's optimizer has (coupled
  ``add_decayed_weights`` before the optimizer, as torch adds ``weight_decay * p`` to the
  gradient): ``optx_wd``'s peer where optax's optimizer has no weight decay.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEAVES_LO, LEAVES_HI = 4, 12
SIZE = 100
_INSTRUCTION = re.compile(r"\s*(ROOT )?%?[\w.\-]+ = ")


def _optimizers():
    """name -> one factory per column of :data:`PEERS`, in its order."""
    import optax

    import optx

    inj = optax.inject_hyperparams

    def with_wd(make):
        # torch's coupled decay g + wd * p ahead of the optimizer, wd a runtime value. The
        # factory keeps ``make``'s keyword arguments visible (inject_hyperparams reads the
        # signature to tell hyperparameters apart).
        import functools
        import inspect

        def factory(weight_decay, *args, **kw):
            return optax.chain(optax.add_decayed_weights(weight_decay), make(*args, **kw))

        sig = inspect.signature(make)
        params = [inspect.Parameter("weight_decay", inspect.Parameter.KEYWORD_ONLY)]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()]
        functools.update_wrapper(factory, make)
        factory.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return factory

    sgd_static = ("nesterov",)
    wd = 1e-2
    return {
        "adam": (
            lambda: optx.adam(1e-3),
            lambda: optx.adam(1e-3, weight_decay=wd),
            lambda: optax.adam(1e-3),
            lambda: inj(optax.adam)(learning_rate=1e-3),
            lambda: inj(with_wd(optax.adam))(learning_rate=1e-3, weight_decay=wd),
        ),
        "adamw": (
            lambda: optx.adamw(1e-3, weight_decay=1e-2),
            lambda: optx.adamw(1e-3, weight_decay=1e-2),
            lambda: optax.adamw(1e-3, weight_decay=1e-2),
            lambda: inj(optax.adamw)(learning_rate=1e-3, weight_decay=1e-2),
            lambda: inj(optax.adamw)(learning_rate=1e-3, weight_decay=1e-2),
        ),
        "sgd_momentum": (
            lambda: optx.sgd(1e-2, momentum=0.9),
            lambda: optx.sgd(1e-2, momentum=0.9, weight_decay=wd),
            lambda: optax.sgd(1e-2, momentum=0.9),
            lambda: inj(optax.sgd, static_args=sgd_static)(learning_rate=1e-2, momentum=0.9),
            lambda: inj(with_wd(optax.sgd), static_args=sgd_static)(
                learning_rate=1e-2, momentum=0.9, weight_decay=wd
            ),
        ),
        "sgd_nesterov": (
            lambda: optx.sgd(1e-2, momentum=0.9, nesterov=True),
            lambda: optx.sgd(1e-2, momentum=0.9, nesterov=True, weight_decay=wd),
            lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
            lambda: inj(optax.sgd, static_args=sgd_static)(
                learning_rate=1e-2, momentum=0.9, nesterov=True
            ),
            lambda: inj(with_wd(optax.sgd), static_args=sgd_static)(
                learning_rate=1e-2, momentum=0.9, nesterov=True, weight_decay=wd
            ),
        ),
        "rmsprop": (
            lambda: optx.rmsprop(1e-2),
            lambda: optx.rmsprop(1e-2, weight_decay=wd),
            lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-8),
            lambda: inj(optax.rmsprop)(learning_rate=1e-2, decay=0.99, eps=1e-8),
            lambda: inj(with_wd(optax.rmsprop))(
                learning_rate=1e-2, decay=0.99, eps=1e-8, weight_decay=wd
            ),
        ),
        "adagrad": (
            lambda: optx.adagrad(1e-2),
            lambda: optx.adagrad(1e-2, weight_decay=wd),
            lambda: optax.adagrad(1e-2, initial_accumulator_value=0.0, eps=1e-10),
            lambda: inj(optax.adagrad)(
                learning_rate=1e-2, initial_accumulator_value=0.0, eps=1e-10
            ),
            lambda: inj(with_wd(optax.adagrad))(
                learning_rate=1e-2, initial_accumulator_value=0.0, eps=1e-10, weight_decay=wd
            ),
        ),
    }


PEERS = ("optx", "optx_wd", "optax", "optax_inject", "optax_inject_wd")
OPTIMIZERS = ("adam", "adamw", "sgd_momentum", "sgd_nesterov", "rmsprop", "adagrad")


def instruction_count(tx, leaves: int, apply_updates=None) -> int:
    """Instructions in the optimized HLO of one jitted, donated float32 update + apply."""
    import jax
    import jax.numpy as jnp
    import optax

    apply_updates = apply_updates or optax.apply_updates
    params = [jnp.zeros((SIZE,), jnp.float32) for _ in range(leaves)]

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return apply_updates(p, updates), s

    text = (
        jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
        .compile().as_text()
    )
    return sum(1 for line in text.splitlines() if _INSTRUCTION.match(line))


def per_leaf(make_tx) -> float:
    """The per-leaf slope of :func:`instruction_count` between ``LEAVES_LO`` and ``LEAVES_HI``."""
    hi = instruction_count(make_tx(), LEAVES_HI)
    lo = instruction_count(make_tx(), LEAVES_LO)
    return (hi - lo) / (LEAVES_HI - LEAVES_LO)


def counts(names=OPTIMIZERS, peers=PEERS) -> dict[str, dict[str, float]]:
    table = _optimizers()
    return {
        name: {peer: per_leaf(table[name][PEERS.index(peer)]) for peer in peers}
        for name in names
    }


def markdown(result: dict[str, dict[str, float]], peers=PEERS) -> str:
    lines = [
        "| optimizer | " + " | ".join(peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for name, row in result.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[p]:g}" for p in peers) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--json", default=None, help="also write the counts to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    peers = tuple(p for p in args.peers.split(",") if p)
    result = counts(tuple(args.optimizers.split(",")), peers)
    print(markdown(result, peers))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
