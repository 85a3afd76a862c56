"""Invalid hyperparameters raise torch's ValueError, with torch's exact message."""

import jax.numpy as jnp
import pytest
import torch
from registry import cases, infos


def torch_message(torch_name, kwargs):
    param = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(ValueError) as info:
        getattr(torch.optim, torch_name)([param], **kwargs)
    return str(info.value)


@pytest.mark.parametrize("info,kwargs", cases("invalid"))
def test_same_error_as_torch(info, kwargs):
    expected = torch_message(info.torch_name, kwargs)
    with pytest.raises(ValueError) as error:
        info.fn(**kwargs)
    assert str(error.value) == expected


@pytest.mark.parametrize("info", infos("tensor_lr"))
def test_array_lr_must_have_one_element(info):
    """torch refuses a tensor lr with several elements; optx an array lr likewise."""
    expected = torch_message(info.torch_name, dict(lr=torch.tensor([0.1, 0.2])))
    with pytest.raises(ValueError) as error:
        info.fn(lr=jnp.array([0.1, 0.2]))
    assert str(error.value) == expected
    info.fn(lr=jnp.array(0.1))  # a 0-d array is fine
