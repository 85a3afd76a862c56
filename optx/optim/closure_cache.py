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

* a dynamic part: the array leaves (``jax.Array``, ``np.ndarray``) of its captured cells,
  ``__defaults__``/``__kwdefaults__`` and the globals its code loads (a loop at a script's top
  level captures its batch as globals), pytrees included (tuples, lists, dicts, equinox-like
  modules). They become arguments of the jitted function, which rebuilds the closure around
  them with :func:`rebuild`; a new shape or dtype retraces under ``jax.jit`` as usual. A NumPy
  array is copied to the device at every call: convert a large captured data set with
  ``jnp.asarray`` once.
* a static part, the cache key: the code, and everything else the closure can read, by
  *value*, since torch re-reads it at every call while a trace bakes it in. Python numbers
  and strings key by value (a changed captured scale or loop counter recompiles, as a
  ``jax.jit`` static argument would); lists, dicts, sets and objects' attributes are walked
  and keyed by their current contents, never by identity, so ``box[0] = 5.0`` or
  ``model.scale = 5.0`` between steps recompiles rather than reusing the old value. Functions
  the closure reaches (helpers it calls, nested closures, bound methods, ``functools.partial``)
  are walked likewise: their code, cells, defaults and the globals they load. Arrays reached
  this indirect way are constants of the trace: a ``jax.Array`` (immutable) keys by identity,
  a writable NumPy array by its contents.

Anything not a plain function (a ``functools.partial``, a bound method, a callable object) and
a closure whose trace with traced captured arrays fails on a concretization (it converts a
captured array to numpy or a Python number) are keyed the same way with all their arrays as
constants (:func:`by_identity`, the caller's fallback).

What is deliberately keyed by identity, as not part of what a loss computes:

* optx's own objects (the optimizer, a scheduler): a closure calls ``opt.zero_grad()`` as in
  torch, but its params come as its argument;
* modules, classes, builtins and functions of installed packages (any top-level package an
  installed distribution provides, per ``importlib.metadata``) and the standard library: what
  they read (``config.SCALE`` of a module, a class attribute, a library's globals) is read at
  trace time, as with any ``jax.jit``; so is what a ``jax.jit``-wrapped function reads.

* a captured list, set or deque the closure only appends or adds to (``traces.append(...)``):
  a log, not an input. This is learned from what the closure does, not from its bytecode: while
  it is traced, each captured container stands behind a recorder that notes whether anything
  reads it; one only ever appended to is keyed by identity from then on. After each compile the
  closure is keyed again, so the compiled function also serves what its own trace left behind
  (a tracer appended to a log is never passed as an argument).

Nothing here reads bytecode: the globals a function may read are its code's ``co_names``, so
every Python release behaves alike.

A closure reaching more than ``_MAX_NODES`` objects (say a captured object holding a whole
data pipeline) cannot be keyed cheaply: it is traced anew at every step (correct, but slow),
with a warning. Capture what the loss needs instead.
"""

from __future__ import annotations

import array
import collections
import functools
import importlib.metadata
import itertools
import sys
import types
import warnings
import weakref
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
_SCALARS = (bool, int, str, bytes, type(None), type(Ellipsis))
# Above this many objects reached, a closure is not keyed (walking it would cost too much).
_MAX_NODES = 10_000
# Packages whose functions are not walked (their globals are library internals).
_LIBRARY_PACKAGES = frozenset({"jax", "jaxlib", "numpy", "optx", "scipy", "optax", "flax",
                               "equinox", "haiku", "torch"})
_uncached = itertools.count()


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
    # nothing dynamic, rebuild returns ``fn``
    cells: tuple[_Tree, ...] | None
    global_names: tuple[str, ...] = ()


class _Ref:
    """Keys an object by identity and holds it, so its id is not reused while the key lives."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ref) and other.obj is self.obj


class _Uncacheable(Exception):
    pass


# What each closure code was seen doing, while traced, to the lists, sets and deques it
# captures (by free-variable or global name): only putting things in (a log), or reading.
_WRITE_METHODS = frozenset({"append", "appendleft", "extend", "add", "insert"})
_CONTAINERS = (list, set, collections.deque)
_writes: weakref.WeakKeyDictionary[types.CodeType, set[str]] = weakref.WeakKeyDictionary()
_reads: weakref.WeakKeyDictionary[types.CodeType, set[str]] = weakref.WeakKeyDictionary()


def _write_only(code: types.CodeType) -> frozenset[str]:
    """The captured names ``code``'s traces only ever put things into (nothing read)."""
    return frozenset(_writes.get(code, set()) - _reads.get(code, set()))


class _Recorder:
    """Stands for a captured list, set or deque while the closure is traced: forwards every
    operation to it and records whether one reads it (anything but ``append``-like calls)."""

    __slots__ = ("_target", "_code", "_name")

    def __init__(self, target: Any, code: types.CodeType, name: str) -> None:
        self._target, self._code, self._name = target, code, name

    def _read(self) -> Any:
        _reads.setdefault(self._code, set()).add(self._name)
        return self._target

    def __getattr__(self, attr: str) -> Any:
        if attr in _WRITE_METHODS:
            _writes.setdefault(self._code, set()).add(self._name)
            return getattr(self._target, attr)
        return getattr(self._read(), attr)

    def __len__(self) -> int:
        return len(self._read())

    def __iter__(self) -> Any:
        return iter(self._read())

    def __contains__(self, x: Any) -> bool:
        return x in self._read()

    def __getitem__(self, i: Any) -> Any:
        return self._read()[i]

    def __bool__(self) -> bool:
        return bool(self._read())

    def __eq__(self, other: object) -> bool:
        return self._read() == other  # type: ignore[no-any-return]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._read())


class _Walk:
    """Keys values by what a trace would read from them (see the module docstring)."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}  # id -> visit order: cycles and shared objects
        self.nodes = 0

    def key(self, v: Any) -> Hashable:
        if isinstance(v, float):  # -0.0 == 0.0 and nan != nan: key floats by their bits
            return (type(v), v.hex())
        if isinstance(v, complex):
            return (type(v), v.real.hex(), v.imag.hex())
        if isinstance(v, _SCALARS):
            return (type(v), v)
        if isinstance(v, np.generic):
            return (type(v), v.dtype.str, v.tobytes())
        if isinstance(v, jax.Array):  # immutable: its identity is its value
            return ("array", _Ref(v))
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                return ("objects", self.key(v.tolist()))
            if v.flags.writeable:  # may change in place between steps
                return ("ndarray", v.shape, v.dtype.str, hash(v.tobytes()))
            return ("array", _Ref(v))
        if isinstance(v, types.BuiltinFunctionType) and not isinstance(
                getattr(v, "__self__", None), (types.ModuleType, type(None))):
            # a builtin method such as ``cfg.get``: what it reads is its object
            return ("builtin method", v.__name__, self.key(v.__self__))
        if isinstance(v, (types.ModuleType, type, types.BuiltinFunctionType,
                          types.CodeType)) or _is_library(v):
            return ("static", _Ref(v))
        i = self.seen.get(id(v))
        if i is not None:
            return ("seen", i)
        self.seen[id(v)] = len(self.seen)
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _Uncacheable
        return self._container(v)

    def _container(self, v: Any) -> Hashable:
        t = type(v)
        if isinstance(v, (list, tuple, dict, set, frozenset, collections.deque)):
            # subclasses too (their attributes with them); sets by their elements' keys
            if isinstance(v, dict):
                items: Hashable = tuple((self.key(k), self.key(x)) for k, x in v.items())
            elif isinstance(v, (set, frozenset)):
                items = frozenset(self.key(x) for x in v)
            else:
                items = tuple(self.key(x) for x in v)
            return (_Ref(t), items, self.attrs(getattr(v, "__dict__", {})))
        if isinstance(v, (bytearray, array.array)):
            return (_Ref(t), bytes(v))
        if t is types.FunctionType:
            return self.function(v)
        if t is types.MethodType:
            return ("method", self.key(v.__func__), self.key(v.__self__))
        if t is functools.partial:
            return ("partial", self.key(v.func), self.key(v.args), self.key(v.keywords))
        if t is types.CellType:
            try:
                return ("cell", self.key(v.cell_contents))
            except ValueError:  # not yet assigned
                return ("cell",)
        leaves, treedef = jax.tree_util.tree_flatten(v)
        if not (len(leaves) == 1 and leaves[0] is v):  # a registered pytree (namedtuple, ...)
            try:
                hash(treedef)
                return ("tree", treedef, tuple(self.key(x) for x in leaves))
            except TypeError:
                pass
        if _value_hashable(v):  # frozen dataclasses, enums: equal values, equal results
            return (t, v)
        state = getattr(v, "__dict__", None)
        slots = [n for c in t.__mro__ for n in getattr(c, "__slots__", ())]
        if state is None and not slots:  # a C object (a jitted function, a ufuncs): opaque
            return ("opaque", _Ref(v))
        fields = {n: getattr(v, n) for n in slots if isinstance(n, str) and hasattr(v, n)}
        return ("object", _Ref(t), self.attrs(state or {}), self.attrs(fields))

    def attrs(self, d: dict[str, Any]) -> Hashable:
        return tuple((k, self.key(x)) for k, x in d.items())

    def function(self, fn: types.FunctionType) -> Hashable:
        names = tuple(n for n in _loaded_globals(fn.__code__) if n in fn.__globals__)
        return (
            "function", fn.__code__, _Ref(fn.__globals__), fn.__name__,
            tuple(self.key(c) for c in fn.__closure__ or ()),
            self.key(fn.__defaults__), self.key(fn.__kwdefaults__),
            tuple((n, self.key(fn.__globals__[n])) for n in names),
        )


def _value_hashable(v: Any) -> bool:
    """Whether ``v`` hashes by value: its type defines both ``__eq__`` and ``__hash__``."""
    t = type(v)
    if t.__hash__ is object.__hash__ or t.__eq__ is object.__eq__:
        return False
    try:
        hash(v)
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _distributed() -> frozenset[str]:
    """Top-level names of the installed distributions' packages (their metadata, not paths)."""
    return frozenset(importlib.metadata.packages_distributions())


@functools.lru_cache(maxsize=1024)
def _library_module(name: str) -> bool:
    top = name.partition(".")[0]
    return (top in _LIBRARY_PACKAGES or top in sys.stdlib_module_names or top == "builtins"
            or top in _distributed())


def _is_library(v: Any) -> bool:
    """A function or optx object from an installed package or the standard library."""
    if type(v) is types.FunctionType:
        module = getattr(v, "__module__", None)
    else:  # optx's own objects with attributes (the optimizer, a scheduler), not its pytrees
        module = type(v).__module__
        if (module.partition(".")[0] != "optx" or isinstance(v, (tuple, *_ARRAY_TYPES))
                or not hasattr(v, "__dict__")):
            return False
    return isinstance(module, str) and _library_module(module)


def by_identity(fn: Callable[..., Any]) -> Template:
    """``fn`` with every array it captures a constant: keyed by the values it reaches."""
    try:
        key: Hashable = ("constant", _Walk().key(fn))
    except _Uncacheable:
        key = _uncacheable(fn)
    return Template(key, fn, None)


def _uncacheable(fn: Callable[..., Any]) -> Hashable:
    warnings.warn(
        f"step(closure): {getattr(fn, '__qualname__', fn)!r} reaches more than {_MAX_NODES} "
        "objects, too many to key its compiled form by what it reads: it is traced and compiled "
        "at every step. Capture only what the loss needs.",
        RuntimeWarning, stacklevel=4,
    )
    return ("uncached", next(_uncached))


@functools.lru_cache(maxsize=256)
def _loaded_globals(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` (and the code nested in it) may load as globals: its ``co_names``,
    which also lists attribute names (a superset: a global that shares an attribute's name is
    keyed too, harmlessly). No bytecode is read, so no Python release's opcodes matter."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(_loaded_globals(c))
    return tuple(sorted(names))


def _is_dynamic(x: Any) -> bool:
    """An array to pass as an argument; a tracer a trace left in a captured container (a log
    it appended to) is no input."""
    return isinstance(x, _ARRAY_TYPES) and not isinstance(x, jax.core.Tracer)


def _split_value(v: Any, walk: _Walk, write_only: bool) -> tuple[_Tree, Hashable, list[Any]]:
    whole = _Tree(jax.tree_util.tree_structure(0), (v,), (False,))
    if write_only and isinstance(v, _CONTAINERS) or _is_library(v):
        return whole, ("static", _Ref(v)), []
    leaves, treedef = jax.tree_util.tree_flatten(v)
    is_array = tuple(_is_dynamic(x) for x in leaves)
    try:
        hash(treedef)
    except TypeError:  # aux data that cannot be hashed: not split
        is_array = ()
    if not any(is_array):  # kept whole, so a captured list the closure appends to stays it
        return whole, walk.key(v), []
    static = tuple(None if a else x for a, x in zip(is_array, leaves))
    key = (treedef, tuple(None if a else walk.key(x) for a, x in zip(is_array, leaves)))
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
    code = fn.__code__
    # A loop at a script's top level defines the closure there: its batch is a global.
    global_names = tuple(n for n in _loaded_globals(code) if n in fn.__globals__)
    values += [fn.__defaults__, fn.__kwdefaults__]
    values += [fn.__globals__[n] for n in global_names]
    names = [*code.co_freevars, "", ""] + list(global_names)
    write_only = _write_only(code)
    walk = _Walk()
    trees, keys, arrays = [], [], []
    try:
        for name, v in zip(names, values):
            tree, key, leaves = _split_value(v, walk, name in write_only)
            trees.append(tree)
            keys.append(key)
            arrays += leaves
    except _Uncacheable:
        return Template(_uncacheable(fn), fn, None), ()
    full_key = ("code", code, _Ref(fn.__globals__), fn.__name__, global_names, tuple(keys))
    return Template(full_key, fn, tuple(trees), global_names), tuple(arrays)


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
    names = [*fn.__code__.co_freevars, "", ""] + list(template.global_names)
    recorded = False
    for i, (name, v, tree) in enumerate(zip(names, values, template.cells)):
        if name and type(v) in _CONTAINERS and not any(tree.is_array):
            values[i] = _Recorder(v, fn.__code__, name)  # learns whether the trace reads it
            recorded = recorded or i >= n
    *cells, defaults, kwdefaults = values[:n]
    namespace = fn.__globals__
    if recorded or any(any(t.is_array) for t in template.cells[n:]):  # a copy, traced globals
        namespace = {**namespace, **dict(zip(template.global_names, values[n:]))}
    new = types.FunctionType(
        fn.__code__, namespace, fn.__name__, defaults,
        tuple(types.CellType(c) for c in cells) or None,
    )
    new.__kwdefaults__ = kwdefaults
    new.__qualname__ = fn.__qualname__
    return new
