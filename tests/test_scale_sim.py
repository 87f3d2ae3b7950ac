"""The scale benchmark's simulated pools (benchmarks/scale_sim.py), at a tiny size, against the real interchange.

These keep the simulator honest: if the wire changes (a field, the proof, the
handshake) and the simulator does not follow, the interchange refuses or drops
its messages, or no task completes, and these fail.
"""
from __future__ import annotations

from parsl_lite.executors.htex.messages import StatusReply, StatusRequest
from .conftest import wait_for

from benchmarks.scale import measure, simulated


def test_every_task_completes_and_no_pool_is_lost(tmp_path):
    # 3 pools in 2 simulator processes (2 + 1), 4 workers each, 500 no-ops through executor.submit
    figures = measure(3, 4, 500, str(tmp_path), idle_s=0.5, per_process=2, heartbeat_period=0.2,
                      heartbeat_threshold=20.0, timeout_s=40.0)  # measure raises unless all 500 came back as None

    assert figures["pools_lost"] == 0, figures["lost_reasons"]
    assert figures["lost_reasons"] == {}
    assert (figures["refused"], figures["dropped"], figures["unexpected_messages"]) == (0, 0, 0)
    assert figures["tasks_per_batch"] >= 1


def test_interchange_sees_every_simulated_pool_and_answers_its_heartbeats(tmp_path):
    with simulated(3, 4, str(tmp_path), per_process=2, heartbeat_period=0.2,
                   heartbeat_threshold=20.0, timeout_s=40.0) as (executor, _, sims, _):
        status = executor.command(StatusRequest(0))
        assert isinstance(status, StatusReply)
        assert sorted(m.block_id for m in status.managers) == ["0", "1", "2"]
        assert [m.connected_workers for m in status.managers] == [4, 4, 4]
        assert status.connected_workers == 12
        stats = wait_for(lambda: (lambda s: s if s["heartbeat_acks"] >= 6 else None)(sims.stats()),
                         what="two heartbeats of each pool answered")
        assert stats["lost"] == {}
        assert stats["registered"] == 3 and stats["workers"] == 12
        assert executor.command(StatusRequest(0)).refused == 0


def test_encrypted_simulated_pools_complete_every_task(tmp_path):
    # CurveZMQ on every simulated socket, with the executor's keys, as real pools use them
    figures = measure(2, 2, 200, str(tmp_path), idle_s=0.2, heartbeat_period=0.2, heartbeat_threshold=20.0,
                      encrypted=True, timeout_s=40.0)

    assert figures["pools_lost"] == 0, figures["lost_reasons"]
    assert (figures["refused"], figures["dropped"], figures["unexpected_messages"]) == (0, 0, 0)
