"""The high-throughput executor: a ZMQ interchange between the user's process and worker pools.

::

    user process                      interchange process                 a node of a block
    ┌────────────────────────┐        ┌──────────────────────────┐        ┌───────────────────────┐
    │ HighThroughputExecutor │ DEALER │ ROUTER (client port)     │        │ worker pool (manager) │
    │  submit: serialize,    ├───────►│   Ledger (pure): who has │ ROUTER │  registers, heartbeats│
    │  batch, send (io thr.) │◄───────┤   what, capacity, beats  │◄──────►│  starts/replaces      │
    │  completion thread:    │        │ ROUTER (worker port)     │        │  worker processes     │
    │  set futures, callbacks│        └──────────────────────────┘        │   worker 0..W-1 ──────┼─► DEALER each,
    └────────────────────────┘                                            └───────────────────────┘   straight to the
                                                                                                       interchange

Tasks go from the interchange straight to worker processes (each worker has its
own DEALER socket to the worker port), so a task crosses two processes each
way, not three. The pool process (the "manager") registers the node, heartbeats,
starts workers and replaces those that die, and tells the interchange which
worker died with which exit code, so the task it held fails with
``WorkerLost``. A manager that stops heart-beating is declared lost and the
tasks of all its workers fail with ``ManagerLost``.

The executor's I/O thread (``client.py``) only moves frames; results are
deserialized and their futures set, in order, on a completion thread
(``completion.py``), so callbacks may block or submit more work. A lost
interchange is replaced with new blocks (``restart.py``); its tasks fail with
``InterchangeLost`` and are retried if the config allows.

Every message to the interchange carries an HMAC of the run's secret
(``wire_auth.py``), with or without CurveZMQ encryption (``curve.py``).

Wire messages: ``messages.py`` (named, versioned, no pickle in the envelope;
``codec.py`` packs them). Bookkeeping: ``ledger.py`` (pure state machine, no
sockets or clocks); which task each worker runs: ``slots.py``.
"""
