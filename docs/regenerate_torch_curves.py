"""Rewrites ``docs/_data/torch_schedules.json``: torch's side of the schedule gallery.

Usage (needs torch, as the test environment has it: ``make test`` installs it)::

    python docs/regenerate_torch_curves.py

Run it after changing an entry of ``GALLERY`` in ``docs/_ext/schedule_gallery.py``; the docs
build reads the file and needs no torch, and ``tests/test_gallery_data.py`` checks that the
committed file equals what torch computes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

from schedule_gallery import DATA, dump, torch_curves  # noqa: E402

if __name__ == "__main__":
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(dump(torch_curves()))
    print(f"wrote {DATA}")
