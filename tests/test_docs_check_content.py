"""docs/check_content.py (API entries described, no raw LaTeX) and the verdicts of
docs/check_browser.py, on tiny pages (the real site is checked by `make docs`/`make docs-check`;
the browser itself is not needed here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_content = _load("check_content")
check_browser = _load("check_browser")


def _entry(params: str, body: str = "<p>Does things.</p>") -> str:
    return (
        '<dl class="py function"><dt class="sig" id="m.f">f(a, b)</dt><dd>' + body
        + '<dl class="field-list simple"><dt class="field-odd">Parameters<span class="colon">:'
        "</span></dt><dd class=\"field-odd\"><ul class=\"simple\">" + params
        + "</ul></dd></dl></dd></dl>"
    )


def test_described_parameters_pass():
    page = _entry("<li><p><strong>a</strong> (<em>int</em>) – the first.</p></li>"
                  "<li><p><strong>b</strong> – the second.</p></li>")
    assert check_content.undescribed(check_content.parse(page)) == []


def test_bare_parameter_and_empty_entry_fail():
    page = _entry("<li><p><strong>a</strong> (<em>int</em>) – the first.</p></li>"
                  "<li><p><strong>b</strong> (<em>Any</em>)</p></li>")
    page += '<dl class="py attribute"><dt class="sig" id="m.C.flag">flag</dt><dd></dd></dl>'
    assert check_content.undescribed(check_content.parse(page)) == [
        "m.f: parameters b has no description", "m.C.flag: no description"]


def test_latex_in_prose_fails_and_math_passes():
    good = ('<p>The rate <span class="math notranslate">\\(\\frac{1}{t}\\)</span>.</p>'
            '<div class="math">\\[\\mathit{max\\_iter} + \\text{ (lr)}\\]</div>'
            '<pre>\\textit{code is left alone}</pre>')
    assert check_content.raw_latex(check_content.parse(good)) == []
    prose = "<p>Decays as \\frac{1}{t} here.</p>"
    assert "LaTeX in the text" in check_content.raw_latex(check_content.parse(prose))[0]


def test_macro_inside_a_text_mode_argument_fails():
    page = '<div class="math">\\[\\textit{decoupled\\_weight\\_decay}\\]</div>'
    errors = check_content.raw_latex(check_content.parse(page))
    assert len(errors) == 1 and "decoupled" in errors[0]


def test_check_content_counts_pages(tmp_path):
    api = tmp_path / "generated" / "api"
    api.mkdir(parents=True)
    (tmp_path / "index.html").write_text("<p>\\textbf{x}</p>")
    (api / "m.f.html").write_text(_entry("<li><p><strong>a</strong></p></li>"))
    (api / "m.g.html").write_text(_entry("<li><p><strong>a</strong> – described</p></li>"))
    errors, counts = check_content.check(tmp_path)
    assert counts == {"api pages": 2, "api pages with gaps": 1, "pages with raw LaTeX": 1}
    assert len(errors) == 2


def _facts(**math):
    base = {"ready": True, "containers": 1, "errors": [], "raw": [], "cut": [], "small": [],
            "fitted": True, "unrendered": False}
    return {"images": [], "math": {**base, **math} if math is not None else None,
            "wide": [], "column": 800, "tables": [700]}


def test_browser_verdicts():
    assert check_browser.problems("p.html", _facts()) == []
    assert check_browser.problems("p.html", {**_facts(), "math": None}) == []
    failures = check_browser.problems("p.html", {
        **_facts(ready=False, errors=["x"], raw=["a\\_b"], cut=["900px in 800px"],
                 small=["scaled to 70%"]),
        "images": ["fig.png"], "wide": ["<table> 1400px"]})
    assert [f.split(": ")[1] for f in failures] == [
        "image does not load", "MathJax did not finish (not loaded, or timed out)",
        "MathJax error in 'x'", "raw LaTeX shown in 'a\\\\_b'", "formula cut off, 900px in 800px",
        "formula too wide for the column, scaled to 70%", "wider than the 800px content column"]


def test_browser_check_fails_without_a_browser(monkeypatch, tmp_path):
    """No Chromium is a failure, never a silent pass."""
    monkeypatch.setattr(check_browser, "find_browser", lambda: None)
    errors, facts = check_browser.check(tmp_path)
    assert facts == {} and len(errors) == 1 and "no Chromium" in errors[0]
