"""Numbered run directories: ``runinfo/000``, ``runinfo/001``, ..."""
from __future__ import annotations

import os


def make_rundir(path: str) -> str:
    """Create and return the next numbered directory below ``path``.

    Safe when several processes start at once: each ``mkdir`` either creates
    a fresh number or fails and tries the next.
    """
    os.makedirs(path, exist_ok=True)
    existing = [int(name) for name in os.listdir(path) if name.isdigit()]
    number = max(existing) + 1 if existing else 0
    while True:
        candidate = os.path.join(path, f"{number:03d}")
        try:
            os.mkdir(candidate)
            return os.path.abspath(candidate)
        except FileExistsError:
            number += 1
