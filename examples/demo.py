"""optx demo: train a small MLP on synthetic data with optx.optim.AdamW and a cosine schedule.

Prints epoch, loss and lr; if torch is installed, runs the same training with torch.optim from
the same initial weights and batches and prints the largest difference; writes the loss curve
to demo_loss.png (when matplotlib is installed).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import optx

EPOCHS, BATCHES, BATCH, SIZES = 20, 8, 64, (8, 32, 32, 1)


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCHES * BATCH, SIZES[0])).astype(np.float32)
    w = rng.normal(size=(SIZES[0], 1)).astype(np.float32)
    y = (np.sin(x @ w) + 0.1 * rng.normal(size=(len(x), 1))).astype(np.float32)
    return x, y


def init_mlp(seed: int = 1):
    rng = np.random.default_rng(seed)
    return [
        {"w": (rng.normal(size=(i, o)) / np.sqrt(i)).astype(np.float32),
         "b": np.zeros(o, np.float32)}
        for i, o in zip(SIZES[:-1], SIZES[1:])
    ]


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)


def train_optx(x, y, params0):
    params = jax.tree_util.tree_map(jnp.asarray, params0)
    opt = optx.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
    sched = optx.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    losses = []
    for epoch in range(EPOCHS):
        total = 0.0
        for b in range(BATCHES):
            sl = slice(b * BATCH, (b + 1) * BATCH)
            loss, grads = grad_fn(opt.params, x[sl], y[sl])
            opt.step(grads)
            total += float(loss)
        sched.step()
        losses.append(total / BATCHES)
        print(f"epoch {epoch + 1:2d}  loss {losses[-1]:.6f}  lr {sched.get_last_lr()[0]:.6f}")
    return losses


def train_torch(x, y, params0):
    import torch

    ps = [torch.tensor(np.asarray(leaf), requires_grad=True)
          for leaf in jax.tree_util.tree_leaves(params0)]
    treedef = jax.tree_util.tree_structure(params0)
    opt = torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    losses = []
    for _ in range(EPOCHS):
        total = 0.0
        for b in range(BATCHES):
            sl = slice(b * BATCH, (b + 1) * BATCH)
            layers = jax.tree_util.tree_unflatten(treedef, ps)
            h = torch.from_numpy(x[sl])
            for layer in layers[:-1]:
                h = torch.tanh(h @ layer["w"] + layer["b"])
            out = h @ layers[-1]["w"] + layers[-1]["b"]
            loss = torch.mean((out - torch.from_numpy(y[sl])) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        sched.step()
        losses.append(total / BATCHES)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--png", default="demo_loss.png", help="where to write the loss curve")
    args = parser.parse_args()
    x, y = make_data()
    params0 = init_mlp()
    print("optx.optim.AdamW + CosineAnnealingLR")
    losses = train_optx(x, y, params0)
    curves = {"optx": losses}
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: skipping the torch comparison")
    else:
        torch_losses = train_torch(x, y, params0)
        curves["torch"] = torch_losses
        diff = max(abs(a - b) for a, b in zip(losses, torch_losses))
        print(f"torch.optim.AdamW, same weights and batches: largest loss difference {diff:.3e}")
    if plot_curves(curves, args.png) is None:
        print("matplotlib is not installed: no plot")
        return
    print(f"wrote {args.png}")


def plot_curves(curves: dict[str, list[float]], png: str):
    """Draws the loss per epoch (whole epochs on the x axis) into ``png``; returns the axes, or
    None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, "o-" if name == "optx" else "x--", label=name)
    ax.set(xlabel="epoch", ylabel="training loss (MSE)", yscale="log", title="optx demo")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, no 2.5
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return ax

if __name__ == "__main__":
    main()
