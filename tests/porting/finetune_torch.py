"""A transformer fine-tuning script in the style of Hugging Face's ``run_glue.py``, shrunk.

A one-block transformer classifier resumes from a checkpoint (saved by an earlier run that built
its param groups without names, the common case), fine-tunes with AdamW in two param groups (no
weight decay for biases and LayerNorm weights), a linear warmup ``LambdaLR``, gradient
accumulation and ``clip_grad_norm_``, and unfreezes its embedding mid-run with
``add_param_group``. The optx port (``finetune_optx.py``) is this script with the renames in
``renames.py``.
"""

import argparse

import numpy as np
import torch
import torch.optim as optim
from torch.nn.utils import clip_grad_norm_
from torch.optim.lr_scheduler import LambdaLR

# --- model ---
# isort: split
import torch.nn as nn
import torch.nn.functional as F


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.q_proj = nn.Linear(8, 8, bias=False)
        self.k_proj = nn.Linear(8, 8, bias=False)
        self.v_proj = nn.Linear(8, 8, bias=False)
        self.o_proj = nn.Linear(8, 8, bias=False)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.embed(x)
        n = self.norm(h)
        scores = self.q_proj(n) @ self.k_proj(n).transpose(1, 2) / 8 ** 0.5
        h = h + self.o_proj(torch.softmax(scores, -1) @ self.v_proj(n))
        return self.head(h.mean(1))

    def loss(self, x, y, scale):
        return F.cross_entropy(self(x), y) * scale


def freeze(model, prefix, frozen=True):
    for name, p in model.named_parameters():
        if name.startswith(prefix):
            p.requires_grad_(not frozen)
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
        yield torch.from_numpy(x[i:i + batch_size]), torch.from_numpy(y[i:i + batch_size])


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
    checkpoint = torch.load(args.resume)
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
        optimizer.zero_grad()
        for i, (xb, yb) in enumerate(batches(x, y, 4)):
            loss = model.loss(xb, yb, 1 / args.accum)
            loss.backward()
            history.append(loss.item())
            if (i + 1) % args.accum == 0:
                clip_grad_norm_(model.parameters(), args.max_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                history.append(scheduler.get_last_lr()[-1])
    return history


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
