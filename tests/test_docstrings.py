"""Optimizer constructors' docstrings: optax's manner (an ``Args:`` entry for every argument, a
runnable example, run here with doctest) on top of torch's (the algorithm)."""

from __future__ import annotations

import doctest
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import optx
import optx.optimizers
from optx import _doc_fragments

NAMES = sorted(
    m.name for m in pkgutil.iter_modules(optx.optimizers.__path__) if hasattr(optx, m.name)
)
# LBFGS's docstring is being rewritten with its internals (issue 19, item 4).
DOCUMENTED = [n for n in NAMES if n != "lbfgs"]


def _args_section(doc: str) -> list[str]:
    section = re.search(r"\n    Args:\n((?:      .*\n|\s*\n)+)", doc)
    assert section, "no Args: section"
    return re.findall(r"^      (\w+):", section.group(1), re.MULTILINE)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_args_section_lists_every_argument(name):
    """In signature order, torch's implementation switches (one shared sentence) last."""
    fn = getattr(optx, name)
    params = list(inspect.signature(fn).parameters)
    switches = [p for p in params if p in _doc_fragments.TORCH_SWITCHES]
    expected = [p for p in params if p not in switches] + switches
    assert _args_section(fn.__doc__) == expected
    ignored = [p for p in switches if p != "differentiable"]
    assert fn.__doc__.count(_doc_fragments.IGNORED) == len(ignored)
    assert fn.__doc__.count(_doc_fragments.DIFFERENTIABLE) == ("differentiable" in switches)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_example_runs(name):
    fn = getattr(optx, name)
    tests = doctest.DocTestFinder().find(fn, name, globs={})
    assert tests and tests[0].examples, f"optx.{name} has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"optx.{name}'s example failed (see the captured output)"


def test_ignored_switches_sentence_is_written_once():
    root = Path(optx.__file__).resolve().parent
    hits = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
            if re.search(r"accepted\s+(and|so)\b[\s\S]{0,40}\bignored", p.read_text())]
    assert hits == ["_doc_fragments.py"]
