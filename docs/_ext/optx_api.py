"""Generates the API reference from the public modules' ``__all__``.

One page per module (its docstring and a summary table) and one page per public name, written
into ``generated/api/`` when the build starts. A name added to a module's ``__all__`` gets its
page on the next build with no edit here; a public name without a docstring, or whose page would
show a parameter or attribute without a description (``api_inventory.report``), fails the build.
In the sidebar each page is listed under its module by its short name (``OneCycleLR`` under
``optx.optim.lr_scheduler``), so long names stay distinguishable.

References that name an object by its defining module (``optx.transformation.chain``, as type
hints in signatures do) are resolved to the page of its public name; an optx object that exists
but is not public (a helper type in a signature) is rendered as plain text. A reference to a name
that does not exist still fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from api_inventory import private_bases, public_classes, public_names, record_fields, report
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

OUT = "generated/api"


# Cross-reference roles; ``:math:`` (a formula, not a reference) is kept as it is.
_ROLE = re.compile(r":(?!math:)(?:[\w-]+:)?[\w-]+:`~?([^`]+)`")


def summary(obj: Any) -> str:
    """The docstring's first sentence, reference roles turned into literals (a table cell is
    no place for a reference that only resolves inside its class's page)."""
    doc = inspect.getdoc(obj) or ""
    if isinstance(obj, type) and doc == inspect.getdoc(type(obj)):
        doc = ""
    text = " ".join(doc.split("\n\n")[0].split())
    text = _ROLE.sub(lambda m: "``" + "".join(m.group(1).split()).split(".")[-1]
                     .split("<")[-1].rstrip(">") + "``", text)
    sentence, depth, i = text, 0, 0
    while i < len(text):  # the first ". " outside double backquotes
        if text.startswith("``", i):
            depth ^= 1
            i += 2
            continue
        if not depth and text.startswith(". ", i):
            sentence = text[: i + 1]
            break
        i += 1
    return sentence


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _page(modname: str, name: str, obj: Any, k: str) -> str:
    full = f"{modname}.{name}"
    head = _title(f"``{full}``") + f"\n.. currentmodule:: {modname}\n\n"
    if k == "class":
        text = head + f".. autoclass:: {name}\n   :members:\n   :undoc-members:\n"
        text += "   :show-inheritance:\n"
        fields = record_fields(obj)
        if fields:  # described in its Attributes section (see _drop_record_parameters)
            text += f"   :exclude-members: __init__, __new__, {', '.join(fields)}\n"
        excluded = _documented_elsewhere(obj)
        if excluded is not None:
            text += f"   :inherited-members: {', '.join(excluded)}\n"
        return text
    if k == "function":
        return head + f".. autofunction:: {name}\n"
    return head + f".. autodata:: {name}\n   :no-value:\n"


def _documented_elsewhere(cls: type) -> list[str] | None:
    """Base classes whose members this class's page leaves out, or None to inherit nothing.

    Members inherited from a private base (a mixin) are documented on the class, since that
    base has no page; from the first public base on (its own page lists them) and from builtins
    (``tuple``, ``object``) nothing is repeated.
    """
    private = private_bases(cls, _PUBLIC_CLASSES.get("set", set()))
    if not private:
        return None
    return sorted({b.__name__ for b in cls.__mro__[1:] if b not in private})


_PUBLIC_CLASSES: dict[str, set[int]] = {}


SECTIONS = [("class", "Classes"), ("function", "Functions"), ("data", "Types and constants"),
            ("module", "Submodules")]


def _module_page(modname: str, entries: list[tuple[str, Any, str]]) -> str:
    text = _title(f"``{modname}``") + f"\n.. automodule:: {modname}\n   :no-members:\n\n"
    text += f".. currentmodule:: {modname}\n\n"
    for k, heading in SECTIONS:
        names = sorted((n for n, _, kk in entries if kk == k), key=str.lower)
        if not names:
            continue
        text += _title(heading, "-") + "\n"
        if k == "module":
            for n in names:
                obj = getattr(importlib.import_module(modname), n)
                text += f"- :mod:`{obj.__name__}`\n"
            text += "\n"
            continue
        module = importlib.import_module(modname)
        text += ".. list-table::\n   :widths: 35 65\n\n"
        for n in names:
            text += f"   * - :obj:`~{modname}.{n}`\n     - {summary(getattr(module, n))}\n"
        text += "\n"
    pages = sorted(n for n, _, k in entries if k != "module")
    if pages:
        # Short titles: the sidebar lists them under the module's full name.
        text += ".. toctree::\n   :hidden:\n\n" + "".join(
            f"   {n} <{modname}.{n}>\n" for n in pages)
    return text


def _write(path: Path, text: str) -> None:
    # Unchanged files keep their mtime, so an incremental build re-reads only what changed.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app: Sphinx) -> None:
    out = Path(app.srcdir) / OUT
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    table = public_names()
    _PUBLIC_CLASSES["set"] = public_classes(table)
    for full, gaps in report(table).items():
        logger.warning("%s: its page leaves these without a description (write them in its "
                       "docstring's Args:, or an attribute docstring): %s", full,
                       ", ".join(gaps))
    index = _title("Modules") + "\n.. toctree::\n   :maxdepth: 1\n\n"
    for modname, entries in table.items():
        index += f"   {modname}\n"
        _write(out / f"{modname}.rst", _module_page(modname, entries))
        wanted.add(f"{modname}.rst")
        for name, obj, k in entries:
            if k == "module":
                continue
            if k != "data" and not (inspect.getdoc(obj) or "").strip():
                logger.warning("public name %s.%s has no docstring", modname, name)
            _write(out / f"{modname}.{name}.rst", _page(modname, name, obj, k))
            wanted.add(f"{modname}.{name}.rst")
    _write(out / "modules.rst", index)
    wanted.add("modules.rst")
    for stale in out.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    _build_canonical_map(app, table)


def _build_canonical_map(app: Sphinx, table: dict[str, list[tuple[str, Any, str]]]) -> None:
    """``defining.module.qualname -> public.name`` for every public object."""
    canon: dict[str, str] = {}
    for modname, entries in table.items():
        for name, obj, k in entries:
            public = f"{modname}.{name}"
            if k == "module":
                continue
            home = getattr(obj, "__module__", None)
            qual = getattr(obj, "__qualname__", None)
            if home and qual and f"{home}.{qual}" != public:
                canon.setdefault(f"{home}.{qual}", public)
    app.optx_canonical = canon  # type: ignore[attr-defined]


def resolve_private_path(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Resolves ``optx.<private module>.Name[.attr]`` to the documented public name."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("optx."):
        return _resolve_inherited(app, env, node, contnode, target)
    if any(c.isspace() for c in target):  # a role wrapped across docstring lines
        target = "".join(target.split())
    canon: dict[str, str] = getattr(app, "optx_canonical", {})
    domain = env.get_domain("py")
    candidates = [target] if target != node.get("reftarget") else []
    parts = target.split(".")
    for cut in range(len(parts), 1, -1):
        head = ".".join(parts[:cut])
        if head in canon:
            candidates.append(".".join([canon[head], *parts[cut:]]))
            break
    for new in candidates:
        for reftype in (node.get("reftype", "obj"), "obj"):
            ref = domain.resolve_xref(env, node["refdoc"], app.builder, reftype, new, node,
                                      contnode)
            if ref is not None:
                return ref
    if _exists(target):
        # An optx object with no public page (a helper type in a signature): plain text.
        return contnode
    return None


def _resolve_inherited(app: Sphinx, env: Any, node: Any, contnode: Any, target: str) -> Any:
    """An unqualified ``:meth:`name``` in a docstring a class inherits (its page shows the
    docstring, not the base's members) resolves to the member on the base's page."""
    module, cls_name = node.get("py:module"), node.get("py:class")
    if not (module and cls_name and target and not target.startswith(".")):
        return None
    try:
        cls: Any = importlib.import_module(module)
        for attr in cls_name.split("."):
            cls = getattr(cls, attr)
    except (ImportError, AttributeError):
        return None
    canon: dict[str, str] = getattr(app, "optx_canonical", {})
    domain = env.get_domain("py")
    for base in getattr(cls, "__mro__", ())[1:]:
        path = f"{base.__module__}.{base.__qualname__}"
        for reftype in (node.get("reftype", "obj"), "obj"):
            ref = domain.resolve_xref(env, node["refdoc"], app.builder, reftype,
                                      f"{canon.get(path, path)}.{target}", node, contnode)
            if ref is not None:
                return ref
    return None


def _exists(path: str) -> bool:
    """Whether ``path`` names an importable optx module or an attribute inside one."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _drop_record_parameters(app: Sphinx, domain: str, objtype: str, content: Any) -> None:
    """A NamedTuple's or dataclass's page describes its fields in its Attributes section; the
    bare "Parameters" list that the type hints add (the same names, no descriptions) goes."""
    if domain != "py" or objtype != "class":
        return
    signature = content.parent[0]
    target = f"{signature.get('module')}.{signature.get('fullname')}"
    if not target.startswith("optx.") or not _exists(target):
        return
    module, _, name = target.rpartition(".")
    if not record_fields(getattr(importlib.import_module(module), name)):
        return
    # Still raw fields here (``:param count:``, ``:type count:``); the Parameters list is
    # assembled from them after this event.
    for field_list in list(content.findall(nodes.field_list)):
        for field in list(field_list.children):
            if field[0].astext().split(" ", 1)[0] in ("param", "type"):
                field_list.remove(field)
        if not field_list.children:
            field_list.parent.remove(field_list)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve_private_path)
    # After autodoc's own handler (priority 500), which adds the Parameters list.
    app.connect("object-description-transform", _drop_record_parameters, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
