"""Components: replicated consumer apps on the local htex, scaled while they run, drained at the end."""
from __future__ import annotations

import pytest

from parsl_lite import messaging as msg

from .conftest import wait_for
from .htex_helpers import local_htex
from .messaging_helpers import broker  # noqa: F401  (fixture)


def square(body):
    import time
    time.sleep(0.02)
    return body * body


def test_a_component_scales_while_it_runs_and_stop_drains_and_accounts_for_every_message(broker, make_dfk):
    make_dfk(executors=[local_htex(max_workers_per_node=4, cores_per_worker=0.25)])
    q = msg.queue("back-in")
    q.put_many(list(range(300)))
    back = msg.component("back", square, "back-in", replicas=2, executor="htex")
    assert back.replicas == 2
    wait_for(lambda: msg.stats()["queues"]["back-in"]["length"] < 280, 60, "the replicas consuming")
    back.scale(3)
    wait_for(lambda: msg.stats()["queues"]["back-in"]["length"] < 200, 60, "three replicas consuming")
    back.scale(1)
    assert back.replicas == 1
    reports = back.stop(timeout=120)
    assert len(reports) == 3 and [r["replica"] for r in reports] == [0, 1, 2]
    assert sum(r["handled"] for r in reports) == 300 and all(r["failed"] == 0 for r in reports)
    assert sorted(x for r in reports for x in r["results"]) == [i * i for i in range(300)]
    assert all(r["handled"] > 0 for r in reports[:2])
    assert len(q) == 0


def test_bad_component_arguments_are_refused(broker, make_dfk):
    make_dfk(executors=[local_htex()])
    with pytest.raises(ValueError, match="replicas"):
        msg.component("c", square, "in", replicas=-1)
    with pytest.raises(TypeError, match="func"):
        msg.component("c", "not callable", "in")
