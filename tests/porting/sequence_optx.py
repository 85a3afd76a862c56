"""The optx port of ``sequence_torch.py``: outside the model block, only the renames in
``renames.py``."""

import argparse

import numpy as np
import torch

import optx.optim as optim

# --- model ---
# isort: split
import functools

import jax
import jax.numpy as jnp

from porting.sequence_torch import HIDDEN
from porting.sequence_torch import Sequence as TorchSequence


def linear(params, name, x, suffix=""):
    return x @ params[f"{name}.weight{suffix}"].T + params[f"{name}.bias{suffix}"]


def lstm_cell(params, name, x, hidden):
    """torch's LSTMCell: gates in the order input, forget, cell, output."""
    h, c = hidden
    gates = linear(params, name, h, "_hh") + linear(params, name, x, "_ih")
    i, f, g, o = jnp.split(gates, 4, axis=1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    return o * jnp.tanh(c), c


class Sequence:
    """The model as a function of its named parameters, a dict keyed as torch's
    ``named_parameters()``; it starts from the torch model's initial weights (same seed), so both
    runs begin identical. A real port would load a checkpoint or initialise with ``jax.random``."""

    def __init__(self):
        self.params = {
            k: jnp.asarray(v.detach().numpy()) for k, v in TorchSequence().named_parameters()
        }

    def __call__(self, params, input, future=0):
        return forward(params, input, future)


def cells(params, state, input_t):
    h_t, c_t, h_t2, c_t2 = state
    h_t, c_t = lstm_cell(params, "lstm1", input_t, (h_t, c_t))
    h_t2, c_t2 = lstm_cell(params, "lstm2", h_t, (h_t2, c_t2))
    return (h_t, c_t, h_t2, c_t2), linear(params, "linear", h_t2)


@functools.partial(jax.jit, static_argnums=2)
def forward(params, input, future):
    # The time loop as a scan (one traced cell instead of one per sample: fast to compile).
    zeros = jnp.zeros((input.shape[0], HIDDEN))
    step = functools.partial(cells, params)
    state, outputs = jax.lax.scan(step, (zeros,) * 4, input.T[..., None])
    if future:  # if we should predict the future, feed each output back in

        def feed(carry, _):
            state, output = cells(params, *carry)
            return (state, output), output

        _, more = jax.lax.scan(feed, (state, outputs[-1]), length=future)
        outputs = jnp.concatenate([outputs, more])
    return outputs[..., 0].T


def criterion(output, target):
    return jnp.mean((output - target) ** 2)
# --- end model ---


def sine_waves(n, length, period, seed):
    """generate_sine_wave.py in memory: n sines of one period, each shifted by a random phase."""
    rng = np.random.RandomState(seed)
    x = np.arange(length) + rng.randint(-4 * period, 4 * period, n).reshape(n, 1)
    return np.sin(x / 1.0 / period).astype("float64")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2, help="steps to run")
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--future", type=int, default=8)
    opt = parser.parse_args(argv)
    # set random seed to 0
    np.random.seed(0)
    torch.manual_seed(0)
    # make the data and the training set
    data = sine_waves(opt.waves, opt.length, opt.period, seed=2)
    input = jnp.asarray(data[3:, :-1])
    target = jnp.asarray(data[3:, 1:])
    test_input = jnp.asarray(data[:3, :-1])
    test_target = jnp.asarray(data[:3, 1:])
    # build the model
    model = Sequence()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(model.params, lr=0.8)
    history = []
    # begin to train
    for i in range(opt.steps):
        print("STEP: ", i)

        def closure(params):
            optimizer.zero_grad()
            out = model(params, input)
            loss = criterion(out, target)
            return loss

        loss = optimizer.step(closure)
        print("loss:", loss.item())
        history.append(loss.item())
        # begin to predict
        future = opt.future
        pred = model(optimizer.params, test_input, future=future)
        loss = criterion(pred[:, :-future], test_target)
        print("test loss:", loss.item())
        history.append(loss.item())
    return history


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
