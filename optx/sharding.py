"""Helpers for data-parallel training across devices."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax


def mean_across(fn: Callable[[Any], jax.Array], axis_name: Hashable) -> Callable[[Any], jax.Array]:
    """Wraps a per-device loss so its value *and gradient* are averaged over ``axis_name``.

    Under ``pmap`` the gradient of ``lax.pmean(loss(params))`` with respect to per-device params
    is the local gradient, not the mean one, so a closure that only averages the value would let
    replicas diverge (LBFGS re-evaluates its closure inside the line search). The returned
    function averages the value in the forward pass and the gradient in the backward pass, so
    ``jax.value_and_grad`` of it gives the global-batch loss and gradient on every device.
    Use it as LBFGS's ``value_fn`` inside ``pmap``/``shard_map``.
    """

    @jax.custom_vjp
    def mean_fn(params):
        return jax.lax.pmean(fn(params), axis_name)

    def fwd(params):
        value, vjp = jax.vjp(fn, params)
        return jax.lax.pmean(value, axis_name), vjp

    def bwd(vjp, cotangent):
        (grads,) = vjp(cotangent)
        return (jax.lax.pmean(grads, axis_name),)

    mean_fn.defvjp(fwd, bwd)
    return mean_fn
