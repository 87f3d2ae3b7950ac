"""The high-throughput executor: a ZMQ interchange between the user's process and worker pools.

::

    user process                      interchange process                 a node of a block
    ┌────────────────────────┐        ┌──────────────────────────┐        ┌───────────────────────┐
    │ HighThroughputExecutor │ DEALER │ ROUTER (client port)     │        │ worker pool (manager) │
    │  submit: serialize,    ├───────►│   Ledger (pure): who has │ ROUTER │  registers, heartbeats│
    │  batch, send           │◄───────┤   what, capacity, beats  │◄──────►│  starts/replaces      │
    │  result thread: set    │        │ ROUTER (worker port)     │        │  worker processes     │
    │  futures, fail on loss │        └──────────────────────────┘        │   worker 0..W-1 ──────┼─► DEALER each,
    └────────────────────────┘                                            └───────────────────────┘   straight to the
                                                                                                       interchange

Tasks go from the interchange straight to worker processes (each worker has its
own DEALER socket to the worker port), so a task crosses two processes each
way, not three. The pool process (the "manager") registers the node, heartbeats,
starts workers and replaces those that die, and tells the interchange which
worker died with which exit code, so the task it held fails with
``WorkerLost``. A manager that stops heart-beating is declared lost and the
tasks of all its workers fail with ``ManagerLost``.

Wire messages: ``messages.py`` (named, versioned, no pickle in the envelope).
Bookkeeping: ``ledger.py`` (pure state machine, no sockets or clocks).
"""
