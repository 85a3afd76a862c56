"""Checks the built site: every internal link and anchor resolves, and every public name has a page.

Usage: python docs/check_links.py [docs/_build/html]

1. Every ``href``/``src`` in every HTML file that points inside the site (no scheme, no
   ``//host``) must name an existing file, and its ``#fragment``, if any, must be an ``id`` (or
   ``<a name>``) in that file. External links are not followed (there is no network).
2. Every name in the ``__all__`` of the documented modules (see ``docs/_ext/optx_api.py``) must
   have its page, ``generated/api/<module>.<name>.html``, holding an entry with that name's id.

Exits 1 and lists the failures if anything is broken.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"] or "")
        for key in ("href", "src"):
            value = a.get(key)
            if value is not None and not (tag == "link" and a.get("rel") == "preconnect"):
                self.links.append(value)


def _parse(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def check_links(root: Path) -> list[str]:
    errors: list[str] = []
    cache: dict[Path, _Page] = {}
    # _static holds the theme's Jinja macro files (not pages) and the search index's assets.
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)
    for page_path in pages:
        page = _parse(page_path, cache)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            if parts.path:
                target = (page_path.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = page_path.resolve()
            where = f"{page_path.relative_to(root)}: {link}"
            if not target.exists():
                errors.append(f"{where}: no file {target}")
                continue
            fragment = unquote(parts.fragment)
            if (fragment and target.suffix == ".html"
                    and fragment not in _parse(target, cache).ids):
                errors.append(f"{where}: no anchor #{fragment} in {target.name}")
    return errors


def check_api_pages(root: Path) -> list[str]:
    sys.path.insert(0, str(HERE / "_ext"))
    sys.path.insert(0, str(HERE.parent))
    from api_inventory import public_names

    errors = []
    cache: dict[Path, _Page] = {}
    count = 0
    for modname, entries in public_names().items():
        module_page = root / "generated" / "api" / f"{modname}.html"
        if not module_page.exists():
            errors.append(f"module {modname}: no page {module_page.relative_to(root)}")
        for name, _, kind in entries:
            if kind == "module":
                continue
            count += 1
            full = f"{modname}.{name}"
            page = root / "generated" / "api" / f"{full}.html"
            if not page.exists():
                errors.append(f"{full}: no page {page.relative_to(root)}")
            elif full not in _parse(page, cache).ids:
                errors.append(f"{full}: its page has no entry #{full}")
    print(f"check_links: {count} public names, each with its page")
    return errors


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else HERE / "_build" / "html").resolve()
    if not (root / "index.html").exists():
        print(f"check_links: {root} has no index.html; build the site first (make docs)")
        return 1
    errors = check_links(root) + check_api_pages(root)
    n_pages = sum("_static" not in p.relative_to(root).parts for p in root.rglob("*.html"))
    for e in errors:
        print("BROKEN", e)
    if errors:
        print(f"check_links: {len(errors)} broken links, anchors or missing pages")
        return 1
    print(f"check_links: {n_pages} pages, every internal link and anchor resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
