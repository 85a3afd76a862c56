"""PyTorch's MNIST example (pytorch/examples, mnist/main.py), shrunk to run in about a second.

A small CNN trained with Adadelta and StepLR(step_size=1, gamma=0.7) on generated 8x8 "digits"
(ten fixed glyphs plus noise, so nothing is downloaded). The step is written with a closure,
``loss = optimizer.step(closure)``, which every torch optimizer accepts; in that form the optx
port (``mnist_optx.py``) is the same script with the renames in ``renames.py``.
"""

import argparse

import numpy as np
import torch
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR

# --- model ---
# isort: split
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1)
        self.fc1 = nn.Linear(32, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


criterion = nn.NLLLoss()
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
        yield torch.from_numpy(images[i:i + batch_size]), torch.from_numpy(labels[i:i + batch_size])


def train(args, model, train_set, optimizer, epoch, history):
    for batch_idx, (data, target) in enumerate(batches(*train_set, args.batch_size)):

        def closure():
            optimizer.zero_grad()
            output = model(data)
            loss = criterion(output, target)
            loss.backward()
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
    test_data, test_target = torch.from_numpy(test_images), torch.from_numpy(test_labels)

    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    history = []
    for epoch in range(1, args.epochs + 1):
        train(args, model, train_set, optimizer, epoch, history)
        output = model(test_data)
        test_loss = criterion(output, test_target).item()
        correct = (output.argmax(1) == test_target).sum().item()
        print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{len(test_target)}")
        history.append(test_loss)
        scheduler.step()
        history.append(scheduler.get_last_lr()[0])
    return history


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
