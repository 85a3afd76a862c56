"""What the ``optx.optim`` adapter needs to know about an optimizer's torch counterpart.

Each optimizer module declares a :class:`TorchLayout` next to its algorithm and passes it to
:func:`optx.torch_optimizer.torch_optimizer` (LBFGS builds its :class:`TorchTransformation`
itself). The transformation carries it, and ``optx.optim`` (``Optimizer``, ``state_dict``)
reads it there, so no code outside an optimizer's module looks an optimizer up by name.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax

from optx.transformation import GradientTransformation, TransformInitFn, TransformUpdateFn

# Both see the group's parameters in torch's order: ``order[k]`` is the ``jax.tree_util`` leaf
# index of torch's k-th parameter and ``sizes[j]`` the size of leaf j.
# export_state(layout, state, order, sizes) -> {k: torch state entry of torch's k-th parameter}
ExportState = Callable[["TorchLayout", Any, Sequence[int], Sequence[int]],
                       dict[int, dict[str, Any]]]
# import_state(layout, fresh, entries, labels, order, sizes) -> state: ``fresh`` is the group's
# new initial state, ``entries[k]`` the torch entry of torch's k-th parameter (None when absent)
# and ``labels[k]`` how to name it in errors. Raises ValueError on any mismatch.
ImportState = Callable[["TorchLayout", Any, Sequence[Any], Sequence[str], Sequence[int],
                        Sequence[int]], Any]


class TorchLayout(NamedTuple):
    """The facts about a torch optimizer's state and param groups that its math does not show.

    Attributes:
      torch_name: torch's class name (``"Adam"``), for messages.
      has_step: whether torch keeps a per-parameter ``step`` (SGD and Muon keep none); it is the
        state's ``count``.
      private_scalars: entries of ``OptimizerState.scalars`` that are optx bookkeeping, not torch
        state: never exported, never expected in a loaded state_dict.
      slot_flags: ``(slot, flag)`` pairs: torch allocates ``slot`` lazily and the boolean scalar
        ``flag`` (private too) says whether it has. Until then the slot is left out of exported
        state and may be missing from loaded state (SGD's ``momentum_buffer``).
      structural_zeros: hyperparameters whose zero is a branch of torch's update
        (``if weight_decay != 0``, SGD's ``if momentum != 0``): a constant 0 given to the
        constructor leaves the branch out of the compiled update (see
        :func:`optx.set_hyperparams`), so the adapter builds each group's transformation from its
        current values and rebuilds it when one of these crosses zero (one compile, where torch
        switches branch); other changes of value never recompile.
      kept_slots: slots torch keeps, untouched, while the hyperparameter that uses them is 0
        (SGD's and RMSprop's ``momentum_buffer`` after the momentum is lowered to 0). A state may
        hold them although this configuration allocates none; the update carries them over
        unchanged, and the adapter keeps them (and their ``slot_flags``) across a rebuild.
      supports_param_groups: False when torch refuses several param groups (LBFGS).
      state_at_init: torch creates each parameter's state in ``__init__`` (Adagrad's ``step``
        0 and ``sum``), so a parameter that has not stepped has an entry too.
      export_state, import_state: a torch state layout other than one entry per parameter made of
        ``step``, slots and scalars (LBFGS's single state under its first parameter); None for
        that default, which ``optx.optim.state_dict`` implements.
    """

    torch_name: str
    has_step: bool = True
    private_scalars: frozenset[str] = frozenset()
    slot_flags: tuple[tuple[str, str], ...] = ()
    structural_zeros: frozenset[str] = frozenset()
    kept_slots: frozenset[str] = frozenset()
    supports_param_groups: bool = True
    state_at_init: bool = False
    export_state: ExportState | None = None
    import_state: ImportState | None = None

    @property
    def hidden_scalars(self) -> frozenset[str]:
        """Scalars that are not torch state: the private ones and the slot flags."""
        return self.private_scalars | frozenset(flag for _, flag in self.slot_flags)


class TorchTransformation(GradientTransformation):
    """A :class:`~optx.GradientTransformation` that also carries its optimizer's
    :class:`TorchLayout` as ``layout``.

    A subclass rather than a third field or a side registry: it is still optax's two-field
    ``(init, update)`` NamedTuple (``init, update = tx``, ``optax.chain`` and flax's
    ``TrainState`` see no difference, as with optax's own ``GradientTransformationExtraArgs``),
    and the layout travels with the object and dies with it. ``_replace``, copying and pytree
    flattening keep it.
    """

    layout: TorchLayout

    def __new__(
        cls, init: TransformInitFn, update: TransformUpdateFn, layout: TorchLayout
    ) -> TorchTransformation:
        self = super().__new__(cls, init, update)
        object.__setattr__(self, "layout", layout)
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy and pickle call __new__ with these
        return (self.init, self.update, self.layout)

    def _replace(self, **kwargs: Any) -> TorchTransformation:
        unknown = set(kwargs) - {"init", "update"}
        if unknown:
            raise ValueError(f"Got unexpected field names: {sorted(unknown)!r}")
        init = kwargs.get("init", self.init)
        update = kwargs.get("update", self.update)
        return TorchTransformation(init, update, self.layout)


jax.tree_util.register_pytree_node(
    TorchTransformation,
    lambda tx: ((tx.init, tx.update), tx.layout),
    lambda layout, children: TorchTransformation(*children, layout),
)


def layout_of(tx: Any) -> TorchLayout | None:
    """The :class:`TorchLayout` a transformation carries, or None (not an optx optimizer)."""
    layout = getattr(tx, "layout", None)
    return layout if isinstance(layout, TorchLayout) else None
