"""Invalid hyperparameters raise torch's ValueError, with torch's exact message."""

import jax.numpy as jnp
import pytest
import torch

import optx

CASES = [
    ("SGD", "sgd", dict(lr=-0.1)),
    ("SGD", "sgd", dict(momentum=-0.5)),
    ("SGD", "sgd", dict(weight_decay=-1e-3)),
    ("SGD", "sgd", dict(nesterov=True)),
    ("SGD", "sgd", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ("Adam", "adam", dict(lr=-0.1)),
    ("Adam", "adam", dict(eps=-1.0)),
    ("Adam", "adam", dict(betas=(1.0, 0.999))),
    ("Adam", "adam", dict(betas=(0.9, -0.1))),
    ("Adam", "adam", dict(weight_decay=-0.1)),
    ("AdamW", "adamw", dict(lr=-1.0)),
    ("AdamW", "adamw", dict(betas=(0.9, 1.5))),
    ("RMSprop", "rmsprop", dict(lr=-0.1)),
    ("RMSprop", "rmsprop", dict(eps=-0.1)),
    ("RMSprop", "rmsprop", dict(momentum=-0.1)),
    ("RMSprop", "rmsprop", dict(weight_decay=-0.1)),
    ("RMSprop", "rmsprop", dict(alpha=-0.1)),
    ("Adagrad", "adagrad", dict(lr=-0.1)),
    ("Adagrad", "adagrad", dict(lr_decay=-0.1)),
    ("Adagrad", "adagrad", dict(weight_decay=-0.1)),
    ("Adagrad", "adagrad", dict(initial_accumulator_value=-0.1)),
    ("Adagrad", "adagrad", dict(eps=-0.1)),
    ("Adadelta", "adadelta", dict(lr=-0.1)),
    ("Adadelta", "adadelta", dict(rho=1.5)),
    ("Adadelta", "adadelta", dict(eps=-0.1)),
    ("Adadelta", "adadelta", dict(weight_decay=-0.1)),
    ("NAdam", "nadam", dict(lr=-0.1)),
    ("NAdam", "nadam", dict(eps=-0.1)),
    ("NAdam", "nadam", dict(betas=(1.0, 0.9))),
    ("NAdam", "nadam", dict(betas=(0.9, 1.0))),
    ("NAdam", "nadam", dict(weight_decay=-0.1)),
    ("NAdam", "nadam", dict(momentum_decay=-0.1)),
    ("Rprop", "rprop", dict(lr=-0.1)),
    ("Rprop", "rprop", dict(etas=(1.5, 1.2))),
    ("Rprop", "rprop", dict(etas=(0.5, 0.9))),
    ("Adamax", "adamax", dict(lr=-0.1)),
    ("Adamax", "adamax", dict(eps=-0.1)),
    ("Adamax", "adamax", dict(betas=(1.0, 0.9))),
    ("Adamax", "adamax", dict(weight_decay=-0.1)),
    ("ASGD", "asgd", dict(lr=-0.1)),
    ("ASGD", "asgd", dict(weight_decay=-0.1)),
    ("RAdam", "radam", dict(lr=-0.1)),
    ("RAdam", "radam", dict(eps=-0.1)),
    ("RAdam", "radam", dict(betas=(0.9, 1.0))),
    ("RAdam", "radam", dict(weight_decay=-0.1)),
    ("SparseAdam", "sparse_adam", dict(lr=-0.1)),
    ("SparseAdam", "sparse_adam", dict(eps=-0.1)),
    ("SparseAdam", "sparse_adam", dict(betas=(1.0, 0.9))),
    ("Adafactor", "adafactor", dict(lr=-0.1)),
    ("Adafactor", "adafactor", dict(beta2_decay=0.5)),
    ("Adafactor", "adafactor", dict(eps=(-1.0, 1e-3))),
    ("Adafactor", "adafactor", dict(eps=(None, -1e-3))),
    ("Adafactor", "adafactor", dict(d=0.5)),
    ("Adafactor", "adafactor", dict(weight_decay=-0.1)),
    ("Muon", "muon", dict(lr=-0.1)),
    ("Muon", "muon", dict(weight_decay=-0.1)),
    ("Muon", "muon", dict(momentum=-0.1)),
    ("Muon", "muon", dict(adjust_lr_fn="bogus")),
    ("LBFGS", "lbfgs", dict(lr=-0.1)),
]


def torch_message(torch_name, kwargs):
    param = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(ValueError) as info:
        getattr(torch.optim, torch_name)([param], **kwargs)
    return str(info.value)


@pytest.mark.parametrize("torch_name,optx_name,kwargs", CASES,
                         ids=[f"{c[1]}-{'-'.join(c[2])}-{i}" for i, c in enumerate(CASES)])
def test_same_error_as_torch(torch_name, optx_name, kwargs):
    expected = torch_message(torch_name, kwargs)
    with pytest.raises(ValueError) as info:
        getattr(optx, optx_name)(**kwargs)
    assert str(info.value) == expected


@pytest.mark.parametrize("torch_name,optx_name", [
    ("SGD", "sgd"), ("Adam", "adam"), ("AdamW", "adamw"), ("RMSprop", "rmsprop"),
    ("Adagrad", "adagrad"), ("Adadelta", "adadelta"), ("NAdam", "nadam"), ("Rprop", "rprop"),
])
def test_array_lr_must_have_one_element(torch_name, optx_name):
    """torch refuses a tensor lr with several elements; optx an array lr likewise."""
    expected = torch_message(torch_name, dict(lr=torch.tensor([0.1, 0.2])))
    with pytest.raises(ValueError) as info:
        getattr(optx, optx_name)(lr=jnp.array([0.1, 0.2]))
    assert str(info.value) == expected
    getattr(optx, optx_name)(lr=jnp.array(0.1))  # a 0-d array is fine
