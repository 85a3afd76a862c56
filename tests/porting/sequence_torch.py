"""PyTorch's time sequence prediction example (pytorch/examples, time_sequence_prediction/train.py),
shrunk to run in about a second.

Two stacked LSTMCells and a Linear read sine waves one sample at a time and learn to predict the
next one, trained with LBFGS(lr=0.8) and a closure as in the example; the data of
generate_sine_wave.py is made in memory. ``sequence_optx.py`` is the optx port.
"""

import argparse

import numpy as np
import torch
import torch.optim as optim

# --- model ---
# isort: split
import torch.nn as nn

HIDDEN = 6


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, HIDDEN)
        self.lstm2 = nn.LSTMCell(HIDDEN, HIDDEN)
        self.linear = nn.Linear(HIDDEN, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), HIDDEN)
        c_t = torch.zeros(input.size(0), HIDDEN)
        h_t2 = torch.zeros(input.size(0), HIDDEN)
        c_t2 = torch.zeros(input.size(0), HIDDEN)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


criterion = nn.MSELoss()
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
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    # build the model
    model = Sequence()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(model.parameters(), lr=0.8)
    history = []
    # begin to train
    for i in range(opt.steps):
        print("STEP: ", i)

        def closure():
            optimizer.zero_grad()
            out = model(input)
            loss = criterion(out, target)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        print("loss:", loss.item())
        history.append(loss.item())
        # begin to predict
        future = opt.future
        pred = model(test_input, future=future)
        loss = criterion(pred[:, :-future], test_target)
        print("test loss:", loss.item())
        history.append(loss.item())
    return history


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
