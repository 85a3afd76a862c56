"""docs/check_links.py, the link check `make docs` runs over the built site, on a tiny site."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_links", ROOT / "docs" / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _site(tmp_path: Path, link: str) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        f'<html><body><h1 id="top">x</h1><a href="{link}">a</a>'
        '<a href="https://example.com/#nowhere">external</a><a href="#top">self</a></body></html>'
    )
    (tmp_path / "sub" / "page.html").write_text(
        '<html><body><section id="here"><a href="../index.html#top">up</a></section></body></html>'
    )
    return tmp_path


def test_good_links_pass(tmp_path):
    assert _checker().check_links(_site(tmp_path, "sub/page.html#here")) == []


def test_missing_file_fails(tmp_path):
    errors = _checker().check_links(_site(tmp_path, "sub/gone.html"))
    assert len(errors) == 1 and "no file" in errors[0]


def test_missing_anchor_fails(tmp_path):
    errors = _checker().check_links(_site(tmp_path, "sub/page.html#nowhere"))
    assert len(errors) == 1 and "no anchor #nowhere" in errors[0]
