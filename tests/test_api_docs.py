"""Every public name's page describes every argument and attribute it shows, and the examples
in the docstrings outside the optimizer and schedule functions (tested in test_docstrings.py and
test_schedule_doctests.py) run and print what they say; every scheduler class has one.

The check is docs/_ext/api_inventory.py, the one the docs build runs (a gap fails ``make
docs``); here it runs without Sphinx."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))

import api_inventory  # noqa: E402

import optx  # noqa: E402

TABLE = api_inventory.public_names()
NAMES = {f"{mod}.{name}": (obj, kind) for mod, entries in TABLE.items()
         for name, obj, kind in entries if kind != "module"}


def test_every_public_name_documents_its_arguments_and_attributes():
    gaps = api_inventory.report(TABLE)
    assert gaps == {}, "\n".join(f"{k}: {', '.join(v)}" for k, v in gaps.items())


# ---------------------------------------------------------------------------- the checker
def _gaps(obj, kind="function"):
    return api_inventory.undocumented("m.x", obj, kind, public=set())


def test_checker_finds_an_undescribed_parameter():
    def f(a, b, *args, **kwargs):
        """Does things.

        Args:
            a: the first.
            *args: more.
        """

    assert _gaps(f) == ["m.x(b)", "m.x(kwargs)"]


def test_checker_reads_google_sections_and_continuation_lines():
    def f(a, b, c):
        """Does things.

        Args:
            a (int): the first, whose description runs on
                b: (not an entry: a continuation line)
            c: the third.

        Keyword Args:
            b: the second.
        """

    assert _gaps(f) == []


def test_checker_finds_undocumented_members_of_a_class():
    class C:
        """A class.

        Args:
            a: the argument.
        """

        flag: bool
        described: int = 0
        """An attribute docstring."""

        def __init__(self, a):
            self.kept: list = [a]
            self.noted: list = [a]
            """Documented."""

        def method(self, x):
            """No Args section."""

        @property
        def value(self):
            return 1

    assert _gaps(C, "class") == ["m.x.flag", "m.x.method(x)", "m.x.value", "m.x.kept"]


def test_checker_reads_a_records_fields_from_its_attributes():
    class Described(NamedTuple):
        """A record.

        Attributes:
            a: the first field.
            b: the second.
        """

        a: int
        b: int

    class Bare(NamedTuple):
        """A record."""

        a: int

    assert _gaps(Described, "class") == []
    assert _gaps(Bare, "class") == ["m.x(a)"]


# ---------------------------------------------------------------------------- examples
# Examples run by their own modules' tests: the optimizer functions' (test_docstrings.py), the
# schedules' and reduce_lr_on_plateau's (test_schedule_doctests.py), swa_utils' AveragedModel
# and update_bn (test_swa_utils.py).
SWA_TESTED = {"optx.optim.swa_utils.AveragedModel", "optx.optim.swa_utils.update_bn"}


def _tested_elsewhere(full: str, obj) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return (full.startswith("optx.schedules.") or module.startswith("optx.optimizers.")
            or full == "optx.reduce_lr_on_plateau" or full in SWA_TESTED)


def _doctests(full: str, obj) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(obj, full, globs={}) if t.examples]


EXAMPLES = sorted(full for full, (obj, kind) in NAMES.items()
                  if kind != "data" and not _tested_elsewhere(full, obj) and _doctests(full, obj))
SCHEDULERS = [f"optx.optim.lr_scheduler.{n}" for n in optx.optim.lr_scheduler.__all__] + [
    "optx.optim.swa_utils.SWALR"]


def test_every_scheduler_class_has_an_example():
    assert set(SCHEDULERS) <= set(EXAMPLES), sorted(set(SCHEDULERS) - set(EXAMPLES))


@pytest.mark.parametrize("full", EXAMPLES)
def test_docstring_examples_run(full):
    tests = _doctests(full, NAMES[full][0])
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0, f"{full}'s example fails (pytest -s)"
