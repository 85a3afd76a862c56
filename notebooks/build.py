"""Builds the notebooks from the cell sources below and executes them, storing their outputs.

Run `python notebooks/build.py` after changing a notebook's cells here; the committed .ipynb files
carry their outputs so they read well on GitHub. The test suite re-executes every notebook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent

SETUP = """\
import os
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
import jax, jax.numpy as jnp, numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
%matplotlib inline
import optx"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
    NOTEBOOKS[name] = cells


notebook("01_quickstart", [
    ("md", "# optx quickstart\n\nA small MLP trained on data this notebook makes itself: first "
           "with a jitted JAX step and `optx.adamw` under a cosine schedule, then with the "
           "`optx.optim` adapter, which mirrors `torch.optim`."),
    ("code", SETUP),
    ("code", """\
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 4)).astype(np.float32)
y = np.sin(x @ np.array([[1.0], [-2.0], [0.5], [1.5]], np.float32))

def init(seed=1, sizes=(4, 32, 32, 1)):
    r = np.random.default_rng(seed)
    return [{"w": (r.normal(size=(i, o)) / np.sqrt(i)).astype(np.float32), "b": np.zeros(o, np.float32)}
            for i, o in zip(sizes[:-1], sizes[1:])]

def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]

def loss_fn(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)"""),
    ("md", "## The functional API\n\n`optx.adamw` is a `GradientTransformation`; its learning "
           "rate is a schedule, a pure function of the step count evaluated inside jit."),
    ("code", """\
steps = 300
tx = optx.adamw(lr=optx.schedules.cosine_annealing_lr(1e-2, T_max=steps), weight_decay=1e-2)
params = jax.tree_util.tree_map(jnp.asarray, init())
state = tx.init(params)

@jax.jit
def train_step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optx.apply_updates(params, updates), state, loss

functional_losses, lrs = [], []
for step in range(steps):
    params, state, loss = train_step(params, state, x, y)
    functional_losses.append(float(loss))
    lrs.append(float(optx.get_hyperparams(state)["lr"]))
print(f"final loss {functional_losses[-1]:.5f}, lr now {lrs[-1]:.2e}")"""),
    ("md", "## The same with `optx.optim`\n\nA PyTorch loop ported by renaming `torch.optim` to "
           "`optx.optim` and passing gradients explicitly."),
    ("code", """\
params = jax.tree_util.tree_map(jnp.asarray, init())
opt = optx.optim.AdamW(params, lr=1e-2, weight_decay=1e-2)
sched = optx.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
grad_fn = jax.jit(jax.value_and_grad(loss_fn))
adapter_losses = []
for step in range(steps):
    loss, grads = grad_fn(opt.params, x, y)
    opt.step(grads)
    sched.step()
    adapter_losses.append(float(loss))
print(opt)
print("largest difference between the two runs:",
      max(abs(a - b) for a, b in zip(functional_losses, adapter_losses)))"""),
    ("code", """\
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
a1.semilogy(functional_losses, label="functional (optx.adamw)")
a1.semilogy(adapter_losses, "--", label="adapter (optx.optim.AdamW)")
a1.set(xlabel="step", ylabel="loss", title="training loss"); a1.legend()
a2.plot(lrs); a2.set(xlabel="step", ylabel="lr", title="cosine schedule")
plt.tight_layout(); plt.show()"""),
])

notebook("02_porting_from_pytorch", [
    ("md", "# Porting a PyTorch loop to optx\n\nThe same model, initial weights and data in "
           "PyTorch (CPU) and in JAX with `optx.optim`. The loss curves coincide; then a torch "
           "optimizer `state_dict` is imported into optx and training resumes."),
    ("code", SETUP + "\nimport torch\njax.config.update('jax_enable_x64', True)\ntorch.set_default_dtype(torch.float64)"),
    ("code", """\
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 3)); y = (x ** 2).sum(1, keepdims=True) - 1.0
w1, b1 = rng.normal(size=(3, 16)) / 2, np.zeros(16)
w2, b2 = rng.normal(size=(16, 1)) / 4, np.zeros(1)"""),
    ("md", "### PyTorch"),
    ("code", """\
tp = [torch.tensor(a, requires_grad=True) for a in (w1, b1, w2, b2)]
topt = torch.optim.SGD(tp, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=30, gamma=0.5)
X, Y = torch.from_numpy(x), torch.from_numpy(y)
torch_losses = []
for step in range(100):
    topt.zero_grad()
    loss = ((torch.tanh(X @ tp[0] + tp[1]) @ tp[2] + tp[3] - Y) ** 2).mean()
    loss.backward()
    topt.step(); tsched.step()
    torch_losses.append(loss.item())"""),
    ("md", "### optx: rename `torch.optim` to `optx.optim`, pass the gradients"),
    ("code", """\
def loss_fn(p):
    w1, b1, w2, b2 = p
    return ((jnp.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2).mean()

opt = optx.optim.SGD([jnp.asarray(a) for a in (w1, b1, w2, b2)], lr=0.05, momentum=0.9,
                     nesterov=True, weight_decay=1e-3)
sched = optx.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
grad_fn = jax.jit(jax.value_and_grad(loss_fn))
optx_losses = []
for step in range(100):
    loss, grads = grad_fn(opt.params)
    opt.step(grads); sched.step()
    optx_losses.append(float(loss))
print("max |loss difference|:", np.max(np.abs(np.array(torch_losses) - np.array(optx_losses))))
print("max |param difference|:", max(np.max(np.abs(np.asarray(a) - b.detach().numpy()))
                                     for a, b in zip(opt.params, tp)))"""),
    ("code", """\
plt.figure(figsize=(6, 3.5))
plt.semilogy(torch_losses, lw=4, alpha=0.4, label="torch.optim.SGD")
plt.semilogy(optx_losses, "k--", label="optx.optim.SGD")
plt.xlabel("step"); plt.ylabel("loss"); plt.legend(); plt.title("identical trajectories"); plt.show()"""),
    ("md", "## Resuming from a torch `state_dict`\n\nTensors become numpy arrays; the layout "
           "is torch's. optx continues exactly where torch stopped."),
    ("code", """\
sd = topt.state_dict()
sd_np = {"state": {i: {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
                   for i, s in sd["state"].items()},
         "param_groups": sd["param_groups"]}
resumed = optx.optim.SGD([jnp.asarray(p.detach().numpy()) for p in tp], lr=0.05, momentum=0.9,
                         nesterov=True, weight_decay=1e-3)
resumed.load_state_dict(sd_np)
for step in range(20):
    topt.zero_grad()
    loss = ((torch.tanh(X @ tp[0] + tp[1]) @ tp[2] + tp[3] - Y) ** 2).mean()
    loss.backward(); topt.step()
    _, grads = grad_fn(resumed.params)
    resumed.step(grads)
print("after 20 resumed steps, max |param difference|:",
      max(np.max(np.abs(np.asarray(a) - b.detach().numpy())) for a, b in zip(resumed.params, tp)))"""),
])

notebook("03_schedules", [
    ("md", "# Schedule gallery\n\nEvery `torch.optim.lr_scheduler` as a pure optx schedule "
           "`t -> lr`. Each panel draws optx's curve (line) over torch's `get_last_lr()` "
           "sequence (dots)."),
    ("code", SETUP + "\nimport torch\nimport optx.schedules as S\nfrom torch.optim import lr_scheduler as L\njax.config.update('jax_enable_x64', True)"),
    ("code", """\
T = 120
def torch_curve(make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = make(opt)
    out = [sched.get_last_lr()[0]]
    for _ in range(T):
        opt.step(); sched.step(); out.append(sched.get_last_lr()[0])
    return np.array(out)

cases = {
    "StepLR": (S.step_lr(0.1, 30, 0.5), lambda o: L.StepLR(o, 30, 0.5)),
    "MultiStepLR": (S.multi_step_lr(0.1, [20, 50, 50, 90]), lambda o: L.MultiStepLR(o, [20, 50, 50, 90])),
    "ExponentialLR": (S.exponential_lr(0.1, 0.97), lambda o: L.ExponentialLR(o, 0.97)),
    "CosineAnnealingLR": (S.cosine_annealing_lr(0.1, 40, 0.01), lambda o: L.CosineAnnealingLR(o, 40, 0.01)),
    "CosineAnnealingWarmRestarts": (S.cosine_annealing_warm_restarts(0.1, 10, 2),
                                    lambda o: L.CosineAnnealingWarmRestarts(o, 10, 2)),
    "OneCycleLR": (S.one_cycle_lr(0.1, total_steps=T), lambda o: L.OneCycleLR(o, 0.1, total_steps=T)),
    "CyclicLR (triangular2)": (S.cyclic_lr(0.01, 0.1, 15, mode="triangular2"),
                               lambda o: L.CyclicLR(o, 0.01, 0.1, 15, mode="triangular2")),
    "LinearLR": (S.linear_lr(0.1, 0.2, 1.0, 30), lambda o: L.LinearLR(o, 0.2, 1.0, 30)),
    "ConstantLR": (S.constant_lr(0.1, 0.5, 25), lambda o: L.ConstantLR(o, 0.5, 25)),
    "PolynomialLR": (S.polynomial_lr(0.1, 80, 2.0), lambda o: L.PolynomialLR(o, 80, 2.0)),
    "LambdaLR": (S.lambda_lr(0.1, lambda e: 1 / (1 + 0.05 * e)), lambda o: L.LambdaLR(o, lambda e: 1 / (1 + 0.05 * e))),
    "MultiplicativeLR": (S.multiplicative_lr(0.1, lambda e: 0.98), lambda o: L.MultiplicativeLR(o, lambda e: 0.98)),
    "SequentialLR": (S.sequential_lr([S.linear_lr(0.1, 0.1, 1.0, 10), S.exponential_lr(0.1, 0.96)], [10]),
                     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, 10), L.ExponentialLR(o, 0.96)], [10])),
    "ChainedScheduler": (S.chained_scheduler([S.constant_lr(0.1, 0.5, 20), S.exponential_lr(0.1, 0.98)]),
                         lambda o: L.ChainedScheduler([L.ConstantLR(o, 0.5, 20), L.ExponentialLR(o, 0.98)])),
}
fig, axes = plt.subplots(4, 4, figsize=(15, 12))
worst = 0.0
t = jnp.arange(T + 1)
for ax, (name, (sched, make)) in zip(axes.flat, cases.items()):
    ours = np.array([float(sched(i)) for i in range(T + 1)])
    ref = torch_curve(make)
    worst = max(worst, float(np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300))))
    ax.plot(ref, "o", ms=2.5, alpha=0.5, label="torch"); ax.plot(ours, "k-", lw=1, label="optx")
    ax.set_title(name, fontsize=9)
for ax in axes.flat[len(cases):]:
    ax.axis("off")
axes.flat[0].legend()
plt.tight_layout(); plt.show()
print(f"largest relative difference over all schedules: {worst:.2e}")"""),
])

notebook("04_lbfgs_and_plateau", [
    ("md", "# LBFGS and ReduceLROnPlateau\n\nLBFGS with a strong-Wolfe line search, one "
           "jitted `update` per torch `step(closure)`; then `reduce_lr_on_plateau` reacting to "
           "a stalled validation loss."),
    ("code", SETUP + "\njax.config.update('jax_enable_x64', True)"),
    ("code", """\
def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

tx = optx.lbfgs(lr=1, max_iter=5, line_search_fn="strong_wolfe")
params = jnp.array([-1.5, 2.0])
state = tx.init(params)

@jax.jit
def lbfgs_step(params, state):
    value, grads = jax.value_and_grad(rosenbrock)(params)
    updates, state = tx.update(grads, state, params, value=value, value_fn=rosenbrock)
    return optx.apply_updates(params, updates), state, value

path = [np.asarray(params)]
for _ in range(12):
    params, state, value = lbfgs_step(params, state)
    path.append(np.asarray(params))
path = np.array(path)
print("final point", path[-1], "loss", float(rosenbrock(params)))"""),
    ("code", """\
X, Y = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 3, 200))
Z = (1 - X) ** 2 + 100 * (Y - X ** 2) ** 2
plt.figure(figsize=(6, 4.5))
plt.contour(X, Y, np.log10(Z + 1e-3), levels=30, cmap="viridis")
plt.plot(path[:, 0], path[:, 1], "r.-", label="LBFGS steps (5 inner iterations each)")
plt.plot(1, 1, "k*", ms=12, label="minimum")
plt.legend(); plt.title("LBFGS on Rosenbrock"); plt.show()"""),
    ("md", "## ReduceLROnPlateau\n\n`optx.reduce_lr_on_plateau` is a transformation: chained "
           "after an optimizer, it scales the updates; `update(..., value=metric)` feeds the "
           "metric, and it makes torch's decision once per epoch."),
    ("code", """\
rng = np.random.default_rng(0)
xtr, xva = rng.normal(size=(64, 10)), rng.normal(size=(64, 10))
w_true = rng.normal(size=10)
ytr = xtr @ w_true + 0.5 * rng.normal(size=64)
yva = xva @ w_true + 0.5 * rng.normal(size=64)
loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)
tx = optx.chain(optx.sgd(lr=0.1, momentum=0.9), optx.reduce_lr_on_plateau(factor=0.5, patience=3))
w = jnp.zeros(10); state = tx.init(w)

@jax.jit
def epoch(w, state):
    g = jax.grad(loss)(w, xtr, ytr)
    val = loss(w, xva, yva)
    updates, state = tx.update(g, state, w, value=val)
    return optx.apply_updates(w, updates), state, val

vals, scales = [], []
for _ in range(60):
    w, state, val = epoch(w, state)
    vals.append(float(val)); scales.append(float(state[1].scale))
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
a1.semilogy(vals); a1.set(title="validation loss", xlabel="epoch")
a2.semilogy(0.1 * np.array(scales)); a2.set(title="effective lr", xlabel="epoch")
plt.tight_layout(); plt.show()"""),
])

notebook("05_multi_device", [
    ("md", "# Multi-device training\n\n4 host CPU devices stand in for accelerators "
           "(`XLA_FLAGS=--xla_force_host_platform_device_count=4`, set before JAX starts). "
           "The same code runs on GPUs and TPUs."),
    ("code", SETUP + "\nfrom jax.sharding import Mesh, NamedSharding, PartitionSpec as P\nprint(jax.devices())"),
    ("md", "## pmap: replicated state, averaged gradients"),
    ("code", """\
n = jax.local_device_count()
rng = np.random.default_rng(0)
x = rng.normal(size=(n, 32, 8)).astype(np.float32)
y = x.sum(-1, keepdims=True)
params = {"w": jnp.zeros((8, 1)), "b": jnp.zeros(1)}
tx = optx.adam(lr=0.05)
loss_fn = lambda p, x, y: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

def step(p, s, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    g = jax.lax.pmean(g, "devices")
    u, s = tx.update(g, s, p)
    return optx.apply_updates(p, u), s, jax.lax.pmean(loss, "devices")

pstep = jax.pmap(step, axis_name="devices")
replicate = lambda tree: jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)
rp, rs = replicate(params), replicate(tx.init(params))
for i in range(100):
    rp, rs, loss = pstep(rp, rs, x, y)
print("pmap loss", float(loss[0]))"""),
    ("md", "## Sharded jit: the state is partitioned like the params"),
    ("code", """\
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
w = jax.device_put(jnp.ones((8, 16)), NamedSharding(mesh, P(None, "model")))
b = jax.device_put(jnp.zeros(16), NamedSharding(mesh, P("model")))
params = {"w": w, "b": b}
tx = optx.adamw(lr=1e-2)
state = tx.init(params)
for name, leaf in state.slots["exp_avg"].items():
    print(f"exp_avg[{name!r}]: {leaf.sharding.spec}")

xs = jax.device_put(np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32),
                    NamedSharding(mesh, P("data", None)))

@jax.jit
def train_step(params, state, x):
    loss, g = jax.value_and_grad(lambda p: jnp.mean((x @ p["w"] + p["b"]) ** 2))(params)
    u, state = tx.update(g, state, params)
    return optx.apply_updates(params, u), state, loss

for _ in range(20):
    params, state, loss = train_step(params, state, xs)
print("loss", float(loss), "| w sharding after training:", params["w"].sharding.spec)
jax.debug.visualize_array_sharding(state.slots["exp_avg_sq"]["w"])"""),
])


notebook("learning_the_learning_rate", [
    ("md", "# Learning the learning rate\n\nA hypergradient is the derivative of a loss taken "
           "after `k` optimizer updates with respect to a hyperparameter. optx updates are pure "
           "JAX functions whose hyperparameters live in the state, so `jax.grad` goes straight "
           "through `k` updates of `optx.sgd` (see the [Hypergradients](../hypergradients.md) "
           "page). Here it tunes SGD's learning rate and momentum by gradient descent on the "
           "validation loss after 20 training steps."),
    ("code", SETUP),
    ("code", """\
jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(0)
w_true = rng.normal(size=8)
x_train, x_val = rng.normal(size=(64, 8)), rng.normal(size=(64, 8))
y_train = x_train @ w_true + 0.1 * rng.normal(size=64)
y_val = x_val @ w_true + 0.1 * rng.normal(size=64)

def mse(w, x, y):
    return jnp.mean((x @ w - y) ** 2)

tx = optx.sgd(lr=0.01, momentum=0.5)   # nonzero momentum: its branch is compiled in

@jax.jit
def val_loss_after(log_hyper, k=20):
    w = jnp.zeros(8)
    lr, momentum = jnp.exp(log_hyper["lr"]), jax.nn.sigmoid(log_hyper["momentum"])
    state = optx.set_hyperparams(tx.init(w), lr=lr, momentum=momentum)
    for _ in range(k):
        updates, state = tx.update(jax.grad(mse)(w, x_train, y_train), state, w)
        w = optx.apply_updates(w, updates)
    return mse(w, x_val, y_val)

hypergrad = jax.jit(jax.value_and_grad(val_loss_after))"""),
    ("md", "## Gradient descent on the hyperparameters\n\nThe learning rate is optimized in log "
           "space and the momentum through a sigmoid, so both stay valid."),
    ("code", """\
log_hyper = {"lr": jnp.log(0.01), "momentum": jnp.asarray(0.0)}   # lr 0.01, momentum 0.5
history = []
for outer in range(60):
    loss, g = hypergrad(log_hyper)
    history.append((float(loss), float(jnp.exp(log_hyper["lr"])),
                    float(jax.nn.sigmoid(log_hyper["momentum"]))))
    log_hyper = jax.tree_util.tree_map(lambda h, d: h - 0.1 * d, log_hyper, g)
for i in (0, 10, 30, 59):
    print(f"outer step {i:2d}: val loss {history[i][0]:.4f}  lr {history[i][1]:.4f}  "
          f"momentum {history[i][2]:.3f}")"""),
    ("md", "## The landscape it descended\n\nThe validation loss after 20 steps as a function "
           "of the learning rate (momentum fixed at the learned value), with the learned point."),
    ("code", """\
lrs = np.geomspace(1e-3, 0.3, 60)
m_learned = log_hyper["momentum"]
curve = [float(val_loss_after({"lr": jnp.log(l), "momentum": m_learned})) for l in lrs]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(lrs, curve, label="validation loss after 20 steps")
ax.scatter([history[-1][1]], [history[-1][0]], color="C3", zorder=3, label="learned lr")
ax.set_xlabel("learning rate")
ax.set_ylabel("loss")
ax.legend()
plt.show()"""),
    ("md", "The same derivatives match torch's `differentiable=True` to 1e-8 in float64; "
           "`tests/test_hypergradients.py` checks them for SGD, Adam, AdamW, RMSprop and "
           "Adagrad."),
])


notebook("06_low_bit_state", [
    ("md", "# Low-bit optimizer state\n\ntorchao's `AdamW8bit` and `AdamW4bit` in optx: the "
           "moments of every parameter with at least 4096 elements are stored as 8-bit or "
           "4-bit codes with one float32 scale per block. Same MLP regression, three "
           "optimizers: the state's size and the loss curves side by side."),
    ("code", SETUP),
    ("code", """\
rng = np.random.default_rng(0)
x = rng.normal(size=(1024, 16)).astype(np.float32)
y = np.sin(x @ rng.normal(size=(16, 1)).astype(np.float32))

def init(seed=1, sizes=(16, 128, 128, 1)):
    r = np.random.default_rng(seed)
    return [{"w": jnp.asarray((r.normal(size=(i, o)) / np.sqrt(i)).astype(np.float32)),
             "b": jnp.zeros(o, jnp.float32)} for i, o in zip(sizes[:-1], sizes[1:])]

def loss_fn(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return jnp.mean((h @ params[-1]["w"] + params[-1]["b"] - y) ** 2)

def state_bytes(state):
    return sum(a.nbytes for a in jax.tree_util.tree_leaves(state.slots))

def train(tx, steps=300):
    params = init()
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optx.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return losses, state

runs = {name: train(tx) for name, tx in [("AdamW (fp32)", optx.adamw(lr=3e-3)),
                                           ("AdamW8bit", optx.adamw_8bit(lr=3e-3)),
                                           ("AdamW4bit", optx.adamw_4bit(lr=3e-3))]}
n = sum(p.size for p in jax.tree_util.tree_leaves(init()))
for name, (losses, state) in runs.items():
    print(f"{name:13s} state {state_bytes(state) / n:5.2f} bytes/param, final loss {losses[-1]:.4f}")"""),
    ("code", """\
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, (losses, _) in runs.items():
    ax.plot(losses, label=name)
ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("training loss"); ax.legend()
plt.show()"""),
    ("md", "The 128 x 128 hidden matrix (16384 elements) is quantized; the 16 x 128 and "
           "128 x 1 matrices and the biases are under 4096 elements and keep float32 moments, as "
           "in torchao, so this small model saves less than a large one would (see the "
           "[Low-bit optimizer state](../low_bit.md) page)."),
])


def build(name: str, execute: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in NOTEBOOKS[name]:
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        nb.cells.append(cell)
    if execute:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or NOTEBOOKS:
        print("built", build(name))
