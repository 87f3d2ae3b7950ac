"""Raw records: where they live, what the parent adds, how they are read back.

One JSON object per line in ``records/<case>.jsonl``, appended, never
rewritten; ``RESULTS.md`` is derived from them. A record holds the child's
fields (``adapter``, ``library``, ``executor``, ``case``, ``params``,
``workers``, ``python``, ``figures``, ``startup_s``, ``stop_s`` or ``error``)
and the parent's (``run_id``, ``repeat``, ``timestamp``, ``loadavg_before``,
``loadavg_after``, ``wall_s``, ``git_commit``, ``git_dirty``, ``machine``, and
``run_dir`` when the library's run directory was kept).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
RECORDS_DIR = PACKAGE_DIR / "records"
RESULTS_PATH = PACKAGE_DIR / "RESULTS.md"

Record = dict[str, Any]


def append(records_dir: Path, record: Record) -> Path:
    """Append one record to ``<records_dir>/<case>.jsonl``.

    Args:
        records_dir: created if missing.
        record: must have ``case``.

    Returns:
        The file written.
    """
    records_dir.mkdir(parents=True, exist_ok=True)
    path = records_dir / f"{record['case']}.jsonl"
    line = json.dumps(record, sort_keys=True) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)  # one write per line, so a crash never leaves half a record
    return path


def load(records_dir: Path) -> Iterator[Record]:
    """Every record of every ``*.jsonl`` in ``records_dir``; bad lines are skipped.

    Args:
        records_dir: may be missing (no records).

    Yields:
        The records, file by file, in file order.
    """
    for path in sorted(records_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s:%d: not JSON, skipped", path, lineno)


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """An id shared by every record of one ``run`` command, sortable by time."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]


def git_commit() -> str | None:
    """The checked-out commit of the repository, or None (no git, no commits).

    Only ``git rev-parse`` is run: it reads and never changes the repository.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git(*args: str) -> str | None:
    """Output of a read-only git command on the repository, or None."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO_DIR), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_dirty() -> dict[str, Any] | None:
    """How the measured code differs from the commit, outside ``benchmarks/``; None if it does not.

    Only read-only commands run (``status`` and ``diff`` with
    ``--no-optional-locks``: not even the index's stat cache is written).
    Untracked files are not listed.

    Returns:
        ``{"files": [...], "diff_sha1": ...}`` (the hash tells two dirty
        states apart), or None when clean or without git.
    """
    pathspec = ["--", ".", ":(exclude)benchmarks"]
    status = _git("status", "--porcelain", "--untracked-files=no", *pathspec)
    if not status:
        return None
    diff = _git("diff", "HEAD", *pathspec) or ""
    return {"files": [line[3:] for line in status.splitlines() if line.strip()],
            "diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12]}


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU model, OS, host."""
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(terse=True),
        "host": platform.node(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
