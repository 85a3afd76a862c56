"""Compiled closures cached by what they compute, not by function object.

torch's idiom defines the closure inside the training loop, capturing the current batch::

    for data, target in loader:
        def closure(params):
            output = model(params, data)
            return loss_fn(output, target)
        loss = optimizer.step(closure)

Each iteration makes a new function object, so a cache keyed by the object retraces and
recompiles the closure (and LBFGS's whole update, which evaluates it) at every step. Here a
plain Python function is split into

* a static part, the cache key: its code object, globals, name, and the non-array parts of its
  captured cells, ``__defaults__``/``__kwdefaults__`` and the globals its code loads (a loop at
  a script's top level captures its batch as globals), hashable values by type and value (so
  a captured loop counter recompiles, as a ``jax.jit`` static argument would; other objects,
  such as the optimizer or a model object, by identity); and
* a dynamic part: the array leaves (``jax.Array``, ``np.ndarray``) of those captured values,
  pytrees included (tuples, dicts, equinox-like modules). They become arguments of the jitted
  function, which rebuilds the closure around them with :func:`rebuild`; a new shape or dtype
  retraces under ``jax.jit`` as usual. A NumPy array is copied to the device at every call:
  convert a large captured data set with ``jnp.asarray`` once.

Anything else (a ``functools.partial``, a bound method, a callable object, a not yet assigned
cell) is keyed by identity, as before. So is a closure whose trace with traced captured arrays
fails on a concretization (it converts a captured array to numpy or a Python number): the
caller falls back to :func:`by_identity` for it.

Caveat, as with any ``jax.jit``: what the closure reaches only indirectly is read at trace time:
the globals of the functions it calls, and the attributes of captured non-array objects. A
closure that reads ``model.weight`` from a captured mutable object, or calls a function that
reads a global array reassigned between steps, sees the value from its first trace.
"""

from __future__ import annotations

import dis
import functools
import types
from typing import Any, Callable, Hashable, NamedTuple

import jax
import numpy as np

__all__ = ["Template", "by_identity", "split", "rebuild", "TRACER_ERRORS"]

# Errors of a closure that needs a captured array's value at trace time (np.asarray, int(), an
# ``if`` on it): it ran when the array was a constant, so it falls back to identity keying.
TRACER_ERRORS: tuple[type[Exception], ...] = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)

_ARRAY_TYPES = (jax.Array, np.ndarray)
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


class _Tree(NamedTuple):
    """One captured value: its treedef and leaves, arrays marked (their values are dropped)."""

    treedef: Any
    static_leaves: tuple[Any, ...]  # None where an array goes
    is_array: tuple[bool, ...]


class Template(NamedTuple):
    """What is needed to rebuild a closure around new captured arrays."""

    key: Hashable
    fn: Callable[..., Any]  # the first function seen with this key
    # cells, __defaults__, __kwdefaults__, then the globals named in ``global_names``; None:
    # keyed by identity, rebuild returns ``fn``
    cells: tuple[_Tree, ...] | None
    global_names: tuple[str, ...] = ()


def by_identity(fn: Callable[..., Any]) -> Template:
    # The template holds ``fn``, so its id is not reused while the cache entry lives.
    return Template(("object", id(fn)), fn, None)


@functools.lru_cache(maxsize=256)
def _loaded_globals(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and the code nested in it) loads."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_LOADS}
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(_loaded_globals(c))
    return tuple(sorted(names))


def _static_key(v: Any) -> Hashable:
    if isinstance(v, float):  # -0.0 == 0.0 and nan != nan: key floats by their bits
        return (type(v), v.hex())
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))
    return (type(v), v)


def _split_value(v: Any) -> tuple[_Tree, Hashable, list[Any]]:
    leaves, treedef = jax.tree_util.tree_flatten(v)
    is_array = tuple(isinstance(x, _ARRAY_TYPES) for x in leaves)
    try:
        hash(treedef)
    except TypeError:  # aux data that cannot be hashed: not split
        is_array = ()
    if not any(is_array):  # kept whole, so a captured list the closure appends to stays it
        return _Tree(jax.tree_util.tree_structure(0), (v,), (False,)), _static_key(v), []
    static = tuple(None if a else x for a, x in zip(is_array, leaves))
    key = (treedef, tuple(None if a else _static_key(x) for a, x in zip(is_array, leaves)))
    arrays = [x for a, x in zip(is_array, leaves) if a]
    return _Tree(treedef, static, is_array), key, arrays


def split(fn: Callable[..., Any]) -> tuple[Template, tuple[Any, ...]]:
    """``fn``'s template (with its cache key) and its captured arrays, flat."""
    if type(fn) is not types.FunctionType:
        return by_identity(fn), ()
    try:
        values = [c.cell_contents for c in fn.__closure__ or ()]
    except ValueError:  # a cell not yet assigned
        return by_identity(fn), ()
    # A loop at a script's top level defines the closure there: its batch is a global.
    global_names = tuple(n for n in _loaded_globals(fn.__code__) if n in fn.__globals__)
    values += [fn.__defaults__, fn.__kwdefaults__]
    values += [fn.__globals__[n] for n in global_names]
    trees, keys, arrays = [], [], []
    for v in values:
        tree, key, leaves = _split_value(v)
        trees.append(tree)
        keys.append(key)
        arrays += leaves
    key = ("code", fn.__code__, id(fn.__globals__), fn.__name__, global_names, tuple(keys))
    return Template(key, fn, tuple(trees), global_names), tuple(arrays)


def rebuild(template: Template, arrays: tuple[Any, ...]) -> Callable[..., Any]:
    """The closure of ``template`` with ``arrays`` (e.g. tracers) as its captured arrays."""
    if template.cells is None:
        return template.fn
    it = iter(arrays)
    values = []
    for tree in template.cells:
        leaves = [next(it) if a else x for a, x in zip(tree.is_array, tree.static_leaves)]
        values.append(jax.tree_util.tree_unflatten(tree.treedef, leaves))
    fn = template.fn
    n = len(values) - len(template.global_names)
    *cells, defaults, kwdefaults = values[:n]
    namespace = fn.__globals__
    if any(any(t.is_array) for t in template.cells[n:]):  # a copy holding the traced globals
        namespace = {**namespace, **dict(zip(template.global_names, values[n:]))}
    new = types.FunctionType(
        fn.__code__, namespace, fn.__name__, defaults,
        tuple(types.CellType(c) for c in cells) or None,
    )
    new.__kwdefaults__ = kwdefaults
    new.__qualname__ = fn.__qualname__
    return new
