"""Checks what the built site's pages say: every API entry described, no raw LaTeX in the text.

Usage: python docs/check_content.py [docs/_build/html]

1. On every API page (``generated/api/*.html``): each entry (class, function, method,
   attribute, property) has a description, and each item of a Parameters or Variables list
   has one (``name (type) – description``, not a bare ``name (type)``).
2. On every page: no LaTeX outside the math (a ``\\frac`` or ``\\textit`` in the prose or in
   inline code means a formula was not marked as math), and inside the math no ``\\text{}``-like
   argument holding a macro: MathJax typesets text-mode arguments as they are, so
   ``\\text{max\\_iter}`` shows its backslash (write ``\\mathit{max\\_iter}``).

Exits 1 and lists the failures if anything is wrong. The browser check (``check_browser.py``)
then looks at the rendered formulas themselves.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
ENTRY_KINDS = {"class", "function", "method", "attribute", "property", "data", "exception",
               "classmethod", "staticmethod"}
FIELDS = ("Parameters", "Variables", "Keyword Arguments", "Other Parameters")
# Macros in prose: a backslash and a letter run (``\frac``), or an escaped underscore or brace.
PROSE_LATEX = re.compile(r"\\(?:[A-Za-z]{2,}|[_{}])")
# Text-mode arguments MathJax does not parse: ``\text{... \_ ...}``.
TEXT_MODE = re.compile(r"\\(?:text|textit|textbf|textrm|texttt|mbox|hbox)\s*\{([^{}]*)\}")


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):  # type: ignore[no-untyped-def]
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def elements(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node)]


class _Tree(HTMLParser):
    """A small DOM of a Sphinx page (well-formed enough for a stack parser)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.node = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def _entry_name(dt: Node) -> str:
    return dt.attrs.get("id") or " ".join(dt.text().split())[:80]


def undescribed(root: Node) -> list[str]:
    """API entries without a description, and list items of their Parameters/Variables
    fields without one."""
    out: list[str] = []
    for dl in root.walk():
        kinds = dl.classes & ENTRY_KINDS
        if dl.tag != "dl" or "py" not in dl.classes or not kinds:
            continue
        items = dl.elements()
        dt = next((c for c in items if c.tag == "dt"), None)
        dd = next((c for c in items if c.tag == "dd"), None)
        if dt is None:
            continue
        name = _entry_name(dt)
        own = [c for c in (dd.children if dd else [])
               if not (isinstance(c, Node) and c.tag == "dl" and "py" in c.classes)]
        if not "".join(c if isinstance(c, str) else c.text() for c in own).strip():
            out.append(f"{name}: no description")
            continue
        for fl in (c for c in (dd.elements() if dd else []) if c.tag == "dl"
                   and "field-list" in c.classes):
            fields = fl.elements()
            for title, body in zip(fields[::2], fields[1::2]):
                label = title.text().strip().rstrip(":").strip()
                if label not in FIELDS:
                    continue
                lis = [n for n in body.walk() if n.tag == "li"] or [body]
                for li in lis:
                    text = " ".join(li.text().split())
                    strong = next((n for n in li.walk() if n.tag == "strong"), None)
                    param = strong.text() if strong else text.split(" ")[0]
                    if " – " not in text and " -- " not in text:
                        out.append(f"{name}: {label.lower()} {param} has no description")
    return out


def raw_latex(root: Node) -> list[str]:
    """LaTeX that reaches the reader as it is: macros in the prose, and macros inside a
    text-mode argument of a formula."""
    out: list[str] = []

    def visit(node: Node, in_math: bool, skip: bool) -> None:
        # Code blocks are left alone; inline code is read as prose (a ``\\text{lr}`` there is a
        # formula that lost its math role, as the module tables once showed them).
        if node.tag in ("script", "style", "pre", "textarea", "head"):
            return
        is_math = in_math or "math" in node.classes or node.tag in ("math", "mjx-container")
        for child in node.children:
            if isinstance(child, Node):
                visit(child, is_math, skip or "highlight" in child.classes)
                continue
            if skip:
                continue
            if is_math:
                for arg in TEXT_MODE.findall(child):
                    if "\\" in arg:
                        out.append(f"text-mode argument with a macro in math: {arg.strip()!r}")
            else:
                m = PROSE_LATEX.search(child)
                if m:
                    lo = max(m.start() - 30, 0)
                    out.append(f"LaTeX in the text: {' '.join(child[lo:m.end() + 30].split())!r}")

    visit(root, False, False)
    return out


def _pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts
                  and "_modules" not in p.relative_to(root).parts)


def check(root: Path) -> tuple[list[str], dict[str, int]]:
    """(failures, counts): pages with undescribed API entries, pages with raw LaTeX."""
    errors: list[str] = []
    counts = {"api pages": 0, "api pages with gaps": 0, "pages with raw LaTeX": 0}
    for path in _pages(root):
        rel = str(path.relative_to(root))
        tree = parse(path.read_text(encoding="utf-8", errors="replace"))
        if rel.startswith("generated/api/"):
            counts["api pages"] += 1
            gaps = undescribed(tree)
            if gaps:
                counts["api pages with gaps"] += 1
                errors += [f"{rel}: {g}" for g in gaps]
        latex = raw_latex(tree)
        if latex:
            counts["pages with raw LaTeX"] += 1
            errors += [f"{rel}: {e}" for e in latex]
    return errors, counts


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else HERE / "_build" / "html").resolve()
    if not (root / "index.html").exists():
        print(f"check_content: {root} has no index.html; build the site first (make docs)")
        return 1
    errors, counts = check(root)
    for e in errors:
        print("FAIL", e)
    print("check_content: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if errors:
        print(f"check_content: {len(errors)} failures")
        return 1
    print("check_content: every API entry and argument is described, no raw LaTeX")
    return 0


if __name__ == "__main__":
    sys.exit(main())
