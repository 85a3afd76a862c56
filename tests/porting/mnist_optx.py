"""The optx port of ``mnist_torch.py``: outside the model block, only the renames in
``renames.py``."""

import argparse

import numpy as np
import torch

import optx.optim as optim
from optx.optim.lr_scheduler import StepLR

# --- model ---
# isort: split
import jax
import jax.numpy as jnp

from porting.mnist_torch import Net as TorchNet


def conv2d(x, weight, bias):
    dims = ("NCHW", "OIHW", "NCHW")
    y = jax.lax.conv_general_dilated(x, weight, (1, 1), "VALID", dimension_numbers=dims)
    return y + bias[:, None, None]


def max_pool2d(x, k):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")


def log_softmax(x):
    # torch's order: x - (max + log(sum(exp(x - max))))
    m = jnp.max(x, axis=1, keepdims=True)
    return x - (m + jnp.log(jnp.sum(jnp.exp(x - m), axis=1, keepdims=True)))


class Net:
    """The CNN as a function of its named parameters, a dict keyed as torch's
    ``named_parameters()``; it starts from the torch model's initial weights (same seed), so both
    runs begin identical. A real port would load a checkpoint or initialise with ``jax.random``."""

    def __init__(self):
        self.params = {k: jnp.asarray(v.detach().numpy()) for k, v in TorchNet().named_parameters()}

    def __call__(self, params, x):
        x = jax.nn.relu(conv2d(x, params["conv1.weight"], params["conv1.bias"]))
        x = jax.nn.relu(conv2d(x, params["conv2.weight"], params["conv2.bias"]))
        x = max_pool2d(x, 2)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(x @ params["fc1.weight"].T + params["fc1.bias"])
        x = x @ params["fc2.weight"].T + params["fc2.bias"]
        return log_softmax(x)


def criterion(output, target):
    return -jnp.mean(jnp.take_along_axis(output, target[:, None], axis=1))
# --- end model ---


def digits(n, seed):
    """n noisy 8x8 images of ten fixed random glyphs, standardised, with their labels."""
    glyphs = np.random.default_rng(0).random((10, 8, 8)) < 0.4
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = glyphs[labels] + 0.3 * rng.standard_normal((n, 8, 8))
    images = (images - 0.4) / 0.6
    return images[:, None].astype(np.float64), labels


def batches(images, labels, batch_size):
    for i in range(0, len(labels), batch_size):
        yield jnp.asarray(images[i:i + batch_size]), jnp.asarray(labels[i:i + batch_size])


def train(args, model, train_set, optimizer, epoch, history):
    for batch_idx, (data, target) in enumerate(batches(*train_set, args.batch_size)):

        def closure(params):
            optimizer.zero_grad()
            output = model(params, data)
            loss = criterion(output, target)
            return loss

        loss = optimizer.step(closure)
        history.append(loss.item())
        if batch_idx % args.log_interval == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}]\tLoss: {loss.item():.6f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="PyTorch MNIST-style Example")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=1)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train_set = digits(args.train_size, seed=args.seed)
    test_images, test_labels = digits(args.test_size, seed=args.seed + 1)
    test_data, test_target = jnp.asarray(test_images), jnp.asarray(test_labels)

    model = Net()
    optimizer = optim.Adadelta(model.params, lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    history = []
    for epoch in range(1, args.epochs + 1):
        train(args, model, train_set, optimizer, epoch, history)
        output = model(optimizer.params, test_data)
        test_loss = criterion(output, test_target).item()
        correct = (output.argmax(1) == test_target).sum().item()
        print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{len(test_target)}")
        history.append(test_loss)
        scheduler.step()
        history.append(scheduler.get_last_lr()[0])
    return history


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
