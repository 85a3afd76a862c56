"""The schedule gallery's torch curves, committed in docs/_data/torch_schedules.json so that the
docs build needs no torch, are what torch computes now (and cover every gallery entry)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))

import schedule_gallery  # noqa: E402


def test_committed_torch_curves_equal_torch():
    fresh = schedule_gallery.torch_curves()
    committed = schedule_gallery.DATA.read_text()
    # Exact: the file is rewritten by docs/regenerate_torch_curves.py from these values.
    assert committed == schedule_gallery.dump(fresh), (
        "docs/_data/torch_schedules.json differs from torch: run "
        "python docs/regenerate_torch_curves.py")
    assert set(schedule_gallery.load()) == {e.name for e in schedule_gallery.GALLERY} | {
        "reduce_lr_on_plateau"}


def test_stale_entry_is_refused(monkeypatch):
    entry = schedule_gallery.GALLERY[0]
    changed = schedule_gallery.Entry(entry.name, entry.steps + 1, entry.optx_code,
                                     entry.torch_code)
    monkeypatch.setattr(schedule_gallery, "GALLERY", [changed, *schedule_gallery.GALLERY[1:]])
    with pytest.raises(ValueError, match=f"out of date for {entry.name}"):
        schedule_gallery.load()
