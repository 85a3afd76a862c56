"""What CyclicLR and OneCycleLR share: the momentum (or ``betas[0]``) they cycle."""

from __future__ import annotations

from typing import Any

from optx.optim.lr_scheduler.base import _format_param


def setup_momentum(scheduler: Any, optimizer: Any, cycle_momentum: bool, base_momentum: Any,
                   max_momentum: Any, last_epoch: int,
                   max_first: bool = False) -> tuple[list[Any], list[Any]]:
    """torch's momentum setup: checks, ``use_beta1``, and (on a fresh start) each group's
    momentum set to ``max_momentum``; returns ``(base_momentums, max_momentums)``."""
    scheduler.cycle_momentum = cycle_momentum
    if not cycle_momentum:
        return [], []
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
        )
    scheduler.use_beta1 = "betas" in optimizer.defaults
    # CyclicLR formats base_momentum first, OneCycleLR max_momentum (which error comes first).
    if max_first:
        max_momentums = _format_param("max_momentum", optimizer, max_momentum)
    base_momentums = _format_param("base_momentum", optimizer, base_momentum)
    if not max_first:
        max_momentums = _format_param("max_momentum", optimizer, max_momentum)
    if last_epoch == -1:
        for m_momentum, b_momentum, group in zip(max_momentums, base_momentums,
                                                 optimizer.param_groups, strict=True):
            set_momentum(group, scheduler.use_beta1, m_momentum)
            group["max_momentum"] = m_momentum
            group["base_momentum"] = b_momentum
    return base_momentums, max_momentums


def set_momentum(group: dict[str, Any], use_beta1: bool, momentum: Any) -> None:
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum
