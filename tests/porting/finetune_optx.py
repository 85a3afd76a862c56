"""The optx port of ``finetune_torch.py``: outside the model block, only the renames in
``renames.py``. The checkpoint it resumes from is torch's, saved without parameter names,
converted to optx's file format (tensors as numpy arrays)."""

import argparse

import numpy as np
import torch

import optx.optim as optim
from optx.optim import clip_grad_norm_
from optx.optim.lr_scheduler import LambdaLR

# --- model ---
# isort: split
import jax
import jax.numpy as jnp

from optx.optim import accumulate  # torch's .grad accumulation (None + g = g)
from porting.finetune_torch import Classifier as TorchClassifier


def linear(p, name, x, bias=True):
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if bias else y


def layer_norm(p, name, x):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * p[name + ".weight"] + p[name + ".bias"]


class Classifier:
    """The classifier as a function of a dict keyed as torch's ``named_parameters()``, from the
    torch model's initial weights. ``loss`` takes the trained parameters (the optimizer's) and
    the frozen ones from ``self.params``."""

    def __init__(self):
        torch_model = TorchClassifier()
        self.params = {k: jnp.asarray(v.detach().numpy())
                       for k, v in torch_model.named_parameters()}

    def named_parameters(self):
        return list(self.params.items())

    def load_state_dict(self, state):
        self.params = {k: jnp.asarray(state[k]) for k in self.params}

    def __call__(self, params, x):
        p = {**self.params, **params}
        h = linear(p, "embed", x)
        n = layer_norm(p, "norm", h)
        scores = linear(p, "q_proj", n, False) @ jnp.swapaxes(linear(p, "k_proj", n, False), 1, 2)
        attn = jax.nn.softmax(scores / 8 ** 0.5, -1) @ linear(p, "v_proj", n, False)
        h = h + linear(p, "o_proj", attn, False)
        return linear(p, "head", h.mean(1))

    def loss(self, params, x, y, scale):
        logits = self(params, x)
        logp = logits - jax.nn.logsumexp(logits, -1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1)) * scale


def freeze(model, prefix, frozen=True):
    """Nothing to do: a parameter is trained when it is in the optimizer's groups."""


# --- end model ---


NO_DECAY = ["bias", "norm.weight"]


def param_groups(model, weight_decay, frozen):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name.startswith(frozen):
            continue
        (no_decay if any(nd in name for nd in NO_DECAY) else decay).append((name, p))
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 4))
    return x, (x.sum((1, 2)) > 0).astype(np.int64)


def batches(x, y, batch_size):
    for i in range(0, len(y), batch_size):
        yield jnp.asarray(x[i:i + batch_size]), jnp.asarray(y[i:i + batch_size])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", required=True)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--max-norm", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--unfreeze-epoch", type=int, default=2)
    args = parser.parse_args(argv)

    def warmup(step):
        return min(1.0, (step + 1) / args.warmup)

    model = Classifier()
    freeze(model, "embed.")
    checkpoint = optim.load(args.resume)
    model.load_state_dict(checkpoint["model"])
    optimizer = optim.AdamW(param_groups(model, args.weight_decay, "embed."), lr=args.lr)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler = LambdaLR(optimizer, warmup)
    scheduler.load_state_dict(checkpoint["scheduler"])
    x, y = data(24, seed=1)
    history = []
    for epoch in range(args.epochs):
        if epoch == args.unfreeze_epoch:
            freeze(model, "embed.", False)
            embed = [(name, p) for name, p in model.named_parameters() if name.startswith("embed.")]
            optimizer.add_param_group({"params": embed, "lr": args.lr / 10, "weight_decay": 0.0})
            scheduler.base_lrs.append(args.lr / 10)
            scheduler.lr_lambdas.append(warmup)
        grads = optimizer.zero_grad()
        for i, (xb, yb) in enumerate(batches(x, y, 4)):
            loss, g = jax.value_and_grad(model.loss)(optimizer.params, xb, yb, 1 / args.accum)
            grads = accumulate(grads, g)
            history.append(loss.item())
            if (i + 1) % args.accum == 0:
                grads, _ = clip_grad_norm_(grads, args.max_norm)
                optimizer.step(grads)
                scheduler.step()
                grads = optimizer.zero_grad()
                history.append(scheduler.get_last_lr()[-1])
    return history


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
