"""PyTorch training scripts and their optx ports, run side by side by tests/test_porting_scripts.py.

Each ``*_torch.py`` is a shrunk official PyTorch example; each ``*_optx.py`` is its port. Outside
the ``# --- model ---`` block the two differ only by the line rewrites in :mod:`porting.renames`.
Run one by hand from ``tests/``: ``python -m porting.mnist_optx``.
"""
