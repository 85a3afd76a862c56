"""The examples in every ``optx.schedules`` function's docstring (and
``optx.reduce_lr_on_plateau``'s) run and print what they say, and each has an ``Args:``
section."""

from __future__ import annotations

import doctest
import inspect

import pytest

import optx
import optx.schedules as S

FUNCTIONS = {name: getattr(S, name) for name in S.__all__ if inspect.isfunction(getattr(S, name))}
FUNCTIONS["reduce_lr_on_plateau"] = optx.reduce_lr_on_plateau


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_docstring_example_runs(name):
    fn = FUNCTIONS[name]
    doc = inspect.getdoc(fn) or ""
    assert "\nArgs:\n" in doc and "\nReturns:\n" in doc and "\nExample:\n" in doc, name
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(fn, name, globs={})
    assert tests and tests[0].examples, f"{name} has no doctest example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}'s example fails (run pytest -s to see it)"
