"""What the API reference documents, and whether each argument and attribute is described.

Sphinx-free, so that the test suite (``tests/test_api_doc_coverage.py``) runs the same check as
the docs build (``optx_api`` warns, so ``make docs`` fails, on anything this reports):

- :func:`public_names`: every name in the ``__all__`` of ``optx``, ``optx.schedules``,
  ``optx.optim``, ``optx.sharding`` and the optx submodules they list (one page each);
- :func:`undocumented`: for each public name, the parameters of the callables its page shows
  (the function, the class's constructor, each public method) that its docstring's ``Args:``
  section (napoleon's Google style) does not describe, and the public attributes shown on a
  class's page without a description.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import types
from typing import Any

# Roots; submodules listed in a root's __all__ (optx.optim.lr_scheduler, ...) are added.
ROOT_MODULES = ["optx", "optx.schedules", "optx.optim", "optx.sharding"]


# Google-style sections whose entries describe parameters (napoleon's names for them).
PARAM_SECTIONS = ("Args", "Arguments", "Parameters", "Params", "Keyword Args",
                  "Keyword Arguments", "Kwargs", "Other Parameters")
ATTRIBUTE_SECTIONS = ("Attributes",)


def public_modules() -> list[str]:
    """The root modules and, recursively, every optx module named in their ``__all__``."""
    seen: list[str] = []
    todo = list(ROOT_MODULES)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if isinstance(obj, types.ModuleType) and obj.__name__.startswith("optx"):
                todo.append(obj.__name__)
    return seen


def kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if inspect.isroutine(inspect.unwrap(obj)):
        return "function"
    return "data"


def public_names() -> dict[str, list[tuple[str, Any, str]]]:
    """``{module: [(name, object, kind), ...]}`` for every public module, in ``__all__`` order."""
    out: dict[str, list[tuple[str, Any, str]]] = {}
    for modname in public_modules():
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:  # the names the module defines itself
            names = [n for n, v in vars(module).items() if not n.startswith("_")
                     and getattr(v, "__module__", None) == modname]
        out[modname] = [(n, getattr(module, n), kind(getattr(module, n))) for n in names]
    return out


def public_classes(table: dict[str, list[tuple[str, Any, str]]] | None = None) -> set[int]:
    table = public_names() if table is None else table
    return {id(obj) for entries in table.values() for _, obj, k in entries if k == "class"}


def private_bases(cls: type, public: set[int]) -> list[type]:
    """The optx bases of ``cls`` before its first public base: their members appear on the
    class's page (they have no page of their own); from the first public base on nothing is
    repeated."""
    mro = cls.__mro__[1:]
    first_public = next((i for i, b in enumerate(mro) if id(b) in public), len(mro))
    return [b for b in mro[:first_public] if b.__module__.startswith("optx")]


# ----------------------------------------------------------------------------- docstrings
def _sections(doc: str) -> dict[str, list[str]]:
    """``{section title: [entry names]}`` of a Google-style docstring (as ``inspect.getdoc``
    gives it: dedented)."""
    out: dict[str, list[str]] = {}
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"([A-Z][A-Za-z ]*):\s*", lines[i])
        if not m or lines[i].startswith(" "):
            i += 1
            continue
        title, i, indent = m.group(1), i + 1, None
        names = out.setdefault(title, [])
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            line = lines[i]
            if line.strip():
                here = len(line) - len(line.lstrip())
                indent = here if indent is None else indent
                entry = re.match(r"\s*(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\(.*\))?\s*:",
                                 line)
                if here == indent and entry:
                    names += [n.strip().lstrip("*") for n in entry.group(1).split(",")]
            i += 1
    return out


def described(doc: str, sections: tuple[str, ...]) -> set[str]:
    found = _sections(doc)
    return {n for title in sections for n in found.get(title, [])}


def _parameters(obj: Any) -> list[str]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters if p not in ("self", "cls")]


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False))


def record_fields(cls: type) -> list[str]:
    """The fields of a NamedTuple or dataclass: its constructor's parameters, described in its
    ``Attributes:`` section. Their pages show that section only: no bare Parameters list, and
    no field members (a NamedTuple's would read "Alias for field number 0")."""
    return [*getattr(cls, "_fields", ()), *getattr(cls, "__dataclass_fields__", {})]


def _attribute_docstrings(cls: type) -> set[str]:
    """Names given an attribute docstring in the class body (a string right after an
    assignment, or a ``#:`` comment before it), as autodoc reads them from the source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return set()
    body = ast.parse(source).body[0]
    out: set[str] = set()
    stmts = getattr(body, "body", [])
    lines = source.splitlines()
    for i, stmt in enumerate(stmts):
        target = None
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            target = stmt.target.id
        elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
              and isinstance(stmt.targets[0], ast.Name)):
            target = stmt.targets[0].id
        if target is None:
            continue
        nxt = stmts[i + 1] if i + 1 < len(stmts) else None
        docstring_after = (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                           and isinstance(nxt.value.value, str))
        comment_before = stmt.lineno >= 2 and lines[stmt.lineno - 2].strip().startswith("#:")
        if docstring_after or comment_before:
            out.add(target)
    return out


def _instance_attributes(cls: type) -> dict[str, bool]:
    """Public instance attributes annotated in the methods of ``cls`` (``self.base_lrs: list =
    ...``), which autodoc lists, and whether a docstring follows each."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, bool] = {}
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(node, (ast.FunctionDef, ast.If, ast.For, ast.With, ast.Try)) or not (
                isinstance(body, list)):
            continue
        for i, stmt in enumerate(body):
            target = getattr(stmt, "target", None)
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name) and target.value.id == "self"
                    and not target.attr.startswith("_")):
                continue
            nxt = body[i + 1] if i + 1 < len(body) else None
            out[target.attr] = out.get(target.attr, False) or (
                isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str))
    return out


def _members(cls: type, public: set[int]) -> dict[str, Any]:
    """The public members autodoc shows on the class's page (``:members: :undoc-members:``,
    with the private bases' members inherited): name -> the raw class attribute."""
    out: dict[str, Any] = {}
    for owner in reversed([cls, *private_bases(cls, public)]):
        for name in getattr(owner, "__annotations__", {}):
            if not name.startswith("_"):
                out[name] = None
        for name, value in vars(owner).items():
            if not name.startswith("_"):
                out[name] = value
    return out


def undocumented(full: str, obj: Any, k: str, public: set[int]) -> list[str]:
    """What the page of ``full`` shows without a description: ``callable(param)`` for a
    parameter missing from the Args section, ``attribute`` for an undescribed attribute."""
    if k in ("module", "data"):
        return []
    missing: list[str] = []
    doc = inspect.getdoc(obj) or ""
    if k == "function":
        documented = described(doc, PARAM_SECTIONS)
        return [f"{full}({p})" for p in _parameters(obj) if p not in documented]
    # a class: its constructor, then each member its page shows
    fields = set(record_fields(obj))
    if not _is_protocol(obj):
        documented = described(doc, PARAM_SECTIONS + (ATTRIBUTE_SECTIONS if fields else ()))
        missing += [f"{full}({p})" for p in _parameters(obj) if p not in documented]
    # An "Attributes:" section renders as a field list above the members, not as the member's
    # description: a member autodoc lists needs its own docstring.
    attribute_docs = _attribute_docstrings(obj)
    for base in private_bases(obj, public):
        attribute_docs |= _attribute_docstrings(base)
    for name, value in _members(obj, public).items():
        if name in fields:
            continue
        raw = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if inspect.isfunction(raw):
            member_doc = inspect.getdoc(getattr(obj, name)) or ""
            if not member_doc.strip():
                missing.append(f"{full}.{name}")
                continue
            documented = described(member_doc, PARAM_SECTIONS)
            missing += [f"{full}.{name}({p})" for p in _parameters(getattr(obj, name))
                        if p not in documented]
        elif isinstance(raw, property):
            if not (raw.__doc__ or "").strip():
                missing.append(f"{full}.{name}")
        elif inspect.isclass(raw):
            if not (inspect.getdoc(raw) or "").strip():
                missing.append(f"{full}.{name}")
        elif name not in attribute_docs:
            missing.append(f"{full}.{name}")
    # autodoc also lists the instance attributes annotated in the methods of the class
    # (``self.base_lrs: list[Any] = ...``), and, on a page that inherits members from a private
    # base, those of every optx base: each needs a docstring after it.
    seen = set(_members(obj, public))
    inherits = bool(private_bases(obj, public))
    for base in obj.__mro__:
        if base is not obj and not (inherits and base.__module__.startswith("optx")):
            continue
        for name, has_doc in _instance_attributes(base).items():
            if name not in seen and not has_doc:
                missing.append(f"{full}.{name}")
            seen.add(name)
    return missing


def report(table: dict[str, list[tuple[str, Any, str]]] | None = None) -> dict[str, list[str]]:
    """``{public name: [what its page leaves undescribed]}`` for every public name with a gap."""
    table = public_names() if table is None else table
    public = public_classes(table)
    out: dict[str, list[str]] = {}
    for modname, entries in table.items():
        for name, obj, k in entries:
            full = f"{modname}.{name}"
            gaps = undocumented(full, obj, k, public)
            if gaps:
                out[full] = gaps
    return out
