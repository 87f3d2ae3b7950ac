"""Benchmarks of parsl_lite side by side with its peers, in one run.

::

    python -m benchmarks run CASE --executor GROUP      (parent: runner.py)
        │  for repeat / case / params / library, interleaved
        ├─▶ python -m benchmarks.child ...  (fresh interpreter, own session)
        │       adapter.prepare() ── imports, not timed
        │       adapter.start()  ── timed: startup_s
        │       case(adapter)    ── figures
        │       adapter.stop()   ── timed: stop_s
        │   ◀── one JSON record on stdout
        └─▶ records/<case>.jsonl  (append only)
    python -m benchmarks report  ── records/*.jsonl ─▶ RESULTS.md, noop.png, pi.png

``adapters/`` holds one small class per library under test, ``cases/`` one
function per benchmark written against the adapter API, ``tasks.py`` the
functions the apps run, ``plots.py`` the figures of the report. See README.md.
"""
