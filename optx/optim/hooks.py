"""torch.optim's optimizer hooks: step pre/post hooks (per optimizer and global), state_dict and
load_state_dict pre/post hooks, with torch's signatures, order and :class:`RemovableHandle`.

* ``step`` pre-hook ``hook(optimizer, args, kwargs) -> None | (new_args, new_kwargs)``, where
  ``args`` starts with the optimizer itself, as in torch; global pre-hooks run first.
* ``step`` post-hook ``hook(optimizer, args, kwargs) -> None``; per-optimizer ones run first.
* ``state_dict`` pre-hook ``hook(optimizer)``; post-hook ``hook(optimizer, state_dict) ->
  None | state_dict``.
* ``load_state_dict`` pre-hook ``hook(optimizer, state_dict) -> None | state_dict``; post-hook
  ``hook(optimizer)``.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections import OrderedDict
from typing import Any, Callable

_next_id = itertools.count()


class RemovableHandle:
    """A handle that removes its hook, as ``torch.utils.hooks.RemovableHandle``."""

    def __init__(self, hooks_dict: dict[int, Any]) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = next(_next_id)

    def remove(self) -> None:
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None and self.id in hooks_dict:
            del hooks_dict[self.id]

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


_global_optimizer_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
_global_optimizer_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()


def _register(hooks: OrderedDict[int, Any], hook: Callable[..., Any],
              prepend: bool = False) -> RemovableHandle:
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def register_optimizer_step_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """A step pre-hook for every optimizer: ``hook(optimizer, args, kwargs) -> None or
    (new_args, new_kwargs)``, as ``torch.optim.optimizer.register_optimizer_step_pre_hook``."""
    return _register(_global_optimizer_pre_hooks, hook)


def register_optimizer_step_post_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """A step post-hook for every optimizer: ``hook(optimizer, args, kwargs) -> None``, as
    ``torch.optim.optimizer.register_optimizer_step_post_hook``."""
    return _register(_global_optimizer_post_hooks, hook)


def with_step_hooks(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` running the step hooks around it, as torch's ``profile_hook_step``.

    A subclass's ``step`` calling ``super().step(...)`` runs the hooks once, around the outer
    call (torch patches only the instance's class, so its hooks also run once there unless the
    parent class had been patched by an earlier instance).
    """

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if self._in_step:
            return step(*args, **kwargs)
        if _global_optimizer_pre_hooks or self._optimizer_step_pre_hooks:
            for pre_hook in itertools.chain(
                list(_global_optimizer_pre_hooks.values()),
                list(self._optimizer_step_pre_hooks.values()),
            ):
                result = pre_hook(self, args, kwargs)
                if result is not None:
                    if isinstance(result, tuple) and len(result) == 2:
                        args, kwargs = result
                    else:
                        raise RuntimeError(
                            f"{step} must return None or a tuple of (new_args, new_kwargs), but "
                            f"got {result}."
                        )
        self._in_step = True
        try:
            out = step(*args, **kwargs)
        finally:
            self._in_step = False
        if self._optimizer_step_post_hooks or _global_optimizer_post_hooks:
            for post_hook in itertools.chain(
                list(self._optimizer_step_post_hooks.values()),
                list(_global_optimizer_post_hooks.values()),
            ):
                post_hook(self, args, kwargs)
        return out

    wrapper.hooked = True  # type: ignore[attr-defined]
    return wrapper


class HooksMixin:
    """The per-optimizer hook registries and ``register_*_hook`` methods of torch's Optimizer."""

    _in_step = False

    def _init_hooks(self) -> None:
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable[..., Any]] = (
            OrderedDict()
        )
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable[..., Any]] = (
            OrderedDict()
        )

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers a hook run before each :meth:`step`.

        Args:
            hook: ``hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)``; returned
                args and kwargs replace the step's.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Registers a hook run after each :meth:`step`.

        Args:
            hook: ``hook(optimizer, args, kwargs) -> None``.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers a hook run before :meth:`state_dict`.

        Args:
            hook: ``hook(optimizer) -> None``.
            prepend: run it before the hooks already registered instead of after them.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers a hook run after :meth:`state_dict`.

        Args:
            hook: ``hook(optimizer, state_dict) -> None or state_dict``; a returned dict
                replaces the state_dict.
            prepend: run it before the hooks already registered instead of after them.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers a hook run before :meth:`load_state_dict`.

        Args:
            hook: ``hook(optimizer, state_dict) -> None or state_dict``, given a shallow copy;
                a returned dict is loaded instead.
            prepend: run it before the hooks already registered instead of after them.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> RemovableHandle:
        """Registers a hook run after :meth:`load_state_dict`.

        Args:
            hook: ``hook(optimizer) -> None``.
            prepend: run it before the hooks already registered instead of after them.

        Returns:
            A handle whose ``remove()`` unregisters the hook.
        """
        return _register(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    def _state_dict_with_hooks(self, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        for pre_hook in list(self._optimizer_state_dict_pre_hooks.values()):
            pre_hook(self)
        state_dict = make()
        for post_hook in list(self._optimizer_state_dict_post_hooks.values()):
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def _load_state_dict_with_hooks(
        self, state_dict: dict[str, Any], load: Callable[[dict[str, Any]], None]
    ) -> None:
        if not isinstance(state_dict, dict):  # torch fails on `.copy()` with an AttributeError
            raise ValueError("state_dict must be a dict with exactly 'state' and 'param_groups'"
                             f", got {type(state_dict).__name__}")
        state_dict = state_dict.copy()  # shallow, as torch
        for pre_hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        load(state_dict)
        for post_hook in list(self._optimizer_load_state_dict_post_hooks.values()):
            post_hook(self)
