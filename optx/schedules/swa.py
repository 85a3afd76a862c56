"""Stochastic weight averaging's lr: torch's ``swa_utils.SWALR``.

The formulas, in torch's operation order, are shared with ``optx.optim.swa_utils.SWALR``;
``m`` is the arithmetic (see :mod:`optx.schedules.torch_schedule`).
"""

from __future__ import annotations

from typing import Any

from optx.schedules.torch_schedule import TorchSchedule


def check_swalr(anneal_epochs: Any, anneal_strategy: str) -> None:
    if anneal_strategy not in ["cos", "linear"]:
        raise ValueError(
            "anneal_strategy must be one of 'cos' or 'linear', "
            f"instead got {anneal_strategy}"
        )
    if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
        raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")


def swa_anneal(m: Any, strategy: str, t: Any) -> Any:
    """torch's ``_cosine_anneal`` / ``_linear_anneal``: 0 at ``t = 0``, 1 at ``t = 1``."""
    if strategy == "cos":
        return (1 - m.cos(m.pi * t)) / 2
    return t


def swa_alpha(m: Any, step: Any, anneal_epochs: int, strategy: str) -> Any:
    """How far the annealing is after ``step`` steps (torch clips ``step / anneal_epochs``)."""
    return swa_anneal(m, strategy, m.clip(m.num(step) / max(1, anneal_epochs), 0, 1))


def swalr_step(m: Any, step: Any, anneal_epochs: int) -> Any:
    """torch's step index: ``_step_count - 1``, at least 1 when there is no annealing."""
    return m.maximum(1, step) if anneal_epochs == 0 else step


def swalr_chainable(m: Any, lr: Any, swa_lr: Any, step: Any, anneal_epochs: int,
                    strategy: str) -> Any:
    """torch's ``get_lr``: recover the lr before annealing from the current one, re-anneal."""
    step = swalr_step(m, step, anneal_epochs)
    prev_alpha = swa_alpha(m, step - 1, anneal_epochs, strategy)
    prev_lr = m.cond(prev_alpha == 1, lambda: swa_lr,
                     lambda: (lr - prev_alpha * swa_lr) / (1 - prev_alpha))
    alpha = swa_alpha(m, step, anneal_epochs, strategy)
    return swa_lr * alpha + prev_lr * (1 - alpha)


def swalr(
    lr: float, swa_lr: float, anneal_epochs: int = 10, anneal_strategy: str = "cos"
) -> TorchSchedule:
    r"""``torch.optim.swa_utils.SWALR``: anneals from ``lr`` to ``swa_lr`` over
    ``anneal_epochs`` steps (cosine or linear), then stays at ``swa_lr``.

    Args:
      lr: the learning rate when annealing starts.
      swa_lr: the learning rate annealed to.
      anneal_epochs: the number of steps of the annealing (an int >= 0).
      anneal_strategy: ``"cos"`` or ``"linear"``.

    Returns:
      A :class:`~optx.schedules.TorchSchedule` ``t -> lr``.

    Example:
      >>> import optx
      >>> schedule = optx.schedules.swalr(1.0, swa_lr=0.5, anneal_epochs=2,
      ...                                 anneal_strategy="linear")
      >>> [schedule(t) for t in range(4)]
      [1.0, 0.75, 0.5, 0.5]
    """
    check_swalr(anneal_epochs, anneal_strategy)

    def formula(m, t):
        alpha = swa_alpha(m, swalr_step(m, t, anneal_epochs), anneal_epochs, anneal_strategy)
        return swa_lr * alpha + lr * (1 - alpha)

    return TorchSchedule(
        formula, lr,
        lambda m, x, e: swalr_chainable(m, x, swa_lr, e, anneal_epochs, anneal_strategy),
        rebase=lambda lr0: swalr(lr0, swa_lr, anneal_epochs, anneal_strategy),
    )
