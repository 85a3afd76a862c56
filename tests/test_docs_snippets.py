"""Every ```python block of README.md and docs/*.md runs as written (issue 37).

A page's blocks run in order in one namespace, as a reader goes through the page (a block may
use what an earlier block of the same page defined). A block whose first non-blank line starts
with ``>>>`` is a doctest and is checked as one. A block that cannot run here (a torch loop over
a model and a data loader that the page does not define, a multi-host setup) is preceded by an
opt-out marker, an HTML comment (invisible on the site and on GitHub) with the reason:

    <!-- docs-test: skip (a torch loop: model and loader are the reader's) -->

A fragment that uses what the reader already has (``grads``, a flax ``model``) runs after a
hidden setup: an HTML comment whose code runs at its place in the page, in the same namespace:

    <!-- docs-test: setup
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    -->

Also checked: every ``optx.X``, ``optx.optim.X``, ``optx.schedules.X``... name the README and the
docs pages mention exists. Pages added later (docs/low_bit.md, docs/hypergradients.md) are
picked up by the glob.
"""

from __future__ import annotations

import doctest
import importlib
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.S | re.M)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->\s*$")
SETUP = re.compile(r"^<!--[ \t]*docs-test:[ \t]*setup[ \t]*\n(?P<body>.*?)^-->[ \t]*$", re.S | re.M)


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of each ```python block and hidden setup of
    ``page``, in the page's order."""
    text = page.read_text()
    out = [(text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group("body")), None, m.start())
           for m in SETUP.finditer(text)]
    for m in FENCE.finditer(text):
        if m.group("lang").strip() != "python":
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, textwrap.dedent(m.group("body")), skip.group("why") if skip else None,
                    m.start()))
    return [b[:3] for b in sorted(out, key=lambda b: b[3])]


def _run(page: Path, line: int, code: str, namespace: dict) -> None:
    where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}:{line}"
    if code.lstrip().startswith(">>>"):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(code, namespace, where, str(page), line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, clear_globs=False)
        assert runner.failures == 0, f"{where}: doctest failed (see the output above)"
        return
    try:
        exec(compile(code, where, "exec"), namespace)  # noqa: S102
    except Exception as e:
        raise AssertionError(f"{where}: the snippet raised {type(e).__name__}: {e}") from e


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that save a file write it here
    namespace: dict = {"__name__": f"docs_snippet_{page.stem}"}
    for line, code, skip in blocks(page):
        if skip is None:
            _run(page, line, code, namespace)


def test_skip_markers_have_reasons():
    """A marker without a reason (or misspelled) would not skip: list them all."""
    bad = []
    for page in PAGES:
        for i, text in enumerate(page.read_text().splitlines(), 1):
            if ("docs-test" in text and not SKIP.search(text)
                    and not re.match(r"\s*<!--\s*docs-test:\s*setup\s*$", text)
                    and page.name != "CONTRIBUTING.md"):
                bad.append(f"{page.name}:{i}: {text.strip()}")
    assert bad == []


NAME = re.compile(r"\boptx((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    obj = importlib.import_module("optx")
    for i, part in enumerate(parts[1:], 1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:i + 1]))
        except ImportError:
            return False
    return True


def test_every_optx_name_in_readme_and_docs_exists():
    missing = set()
    for page in PAGES:
        for m in NAME.finditer(page.read_text()):
            dotted = "optx" + m.group(1)
            # trailing ".md"/".py"/".html" belong to a file name or a link (optx-dev/optx, ...)
            if re.search(r"\.(md|py|html|npz|png|json|txt|ipynb)$", dotted):
                continue
            if not _resolves(dotted):
                missing.add(f"{page.name}: {dotted}")
    assert sorted(missing) == []


def test_the_name_check_catches_a_missing_name():
    assert _resolves("optx.optim.accumulate") and _resolves("optx.schedules.one_cycle_lr")
    assert not _resolves("optx.optim.not_a_name") and not _resolves("optx.nothing")


def test_demo_plot_has_whole_epochs(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for epochs in (3, 7, 20):  # few epochs: matplotlib's default ticks were 0.5 apart
        ax = demo.plot_curves({"optx": [1.0 / (k + 1) for k in range(epochs)]},
                              str(tmp_path / "loss.png"))
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        assert (tmp_path / "loss.png").stat().st_size > 0


def test_the_runner_reads_setups_skips_and_doctests(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        <!-- docs-test: setup
        x = 2
        -->

        ```python
        y = x + 1
        ```

        <!-- docs-test: skip (not runnable here) -->
        ```python
        raise RuntimeError("skipped")
        ```

        ```python
        >>> y * 2
        6
        ```
        """))
    found = blocks(page)
    assert [(code.strip().split("\n")[0], skip) for _, code, skip in found] == [
        ("x = 2", None), ("y = x + 1", None),
        ('raise RuntimeError("skipped")', "not runnable here"), (">>> y * 2", None)]
    namespace: dict = {}
    for line, code, skip in found:
        if skip is None:
            _run(page, line, code, namespace)
    with pytest.raises(AssertionError, match="doctest failed"):
        _run(page, 1, ">>> y\n4\n", namespace)
