"""The endpoint: a daemon on a resource that runs the function service's tasks through a HighThroughputExecutor.

::

    service ROUTER ◀══ ZMQ + CurveZMQ, dialled by the endpoint (no port opened here) ══ session.py (DEALER)
                                                                                         │  ▲
                 TaskDelivery ─▶ tasks.py (pure: run / drop duplicate / refuse) ─────────┘  │ TaskResults
                                   │ Run                                                    │ (after spool.py
                                   ▼                                                        │  wrote them: fsync)
                 HighThroughputExecutor.submit(runner.run_faas_task, ...) ── future done ───┘
                                   │                       ▲
                         interchange ─▶ worker pools (blocks from the provider, scaled by the
                                                          job status poller and the strategy)

``daemon.py`` is the process (pid file, log, signals, start and stop order),
``config.py`` its ``config.toml``, ``registration.py`` the one HTTP call that
gets it an id and keys, ``status.py`` the heartbeat report and ``status.json``,
``cli.py`` ``parsl-lite endpoint ...``. ``runner.py`` runs on the workers and
imports little.
"""
