"""The interchange forwards a task batch's frames as they came when the ledger sends it on unchanged."""
from __future__ import annotations

from parsl_lite.executors.htex.interchange import Interchange
from parsl_lite.executors.htex.ledger import Dispatch, Ledger, LedgerConfig, ManagerRegistered, ResultsArrived, WorkerConnected
from parsl_lite.executors.htex.messages import PROTOCOL_VERSION, TaskBatch, TaskMessage, decode, encode


def task(tid, body=None):
    return TaskMessage(tid, b"f" * 32, body, b"args%d" % tid, {})


def interchange(workers=1):
    """An interchange without sockets: its sends to workers are recorded as decoded batches."""
    ic = Interchange.__new__(Interchange)
    ic.ledger = Ledger(LedgerConfig())
    ic.ledger.handle(ManagerRegistered(b"m", "block", "host", workers, PROTOCOL_VERSION, 0.0))
    ic.arrived, ic.arrived_frames, ic.identity_of, ic.hosts = [], None, {}, {}
    for index in range(workers):
        ic.ledger.handle(WorkerConnected(b"m", index, 0.0, pid=10 + index))
        ic.identity_of[(b"m", index)] = b"w%d" % index
    ic._actions = {Dispatch: ic._dispatch}
    sent = []
    ic._send_worker_frames = lambda identity, frames, kind: sent.append((identity, list(frames)))
    ic._send_worker = lambda identity, message: sent.append((identity, encode(message)))
    return ic, sent


def arrive(ic, *tasks):
    frames = encode(TaskBatch(tasks))
    ic.arrived_frames = None if ic.arrived else frames
    ic.arrived.extend(decode(frames).tasks)
    return frames


def test_a_batch_sent_on_unchanged_goes_as_it_came():
    ic, sent = interchange()
    frames = arrive(ic, task(1, b"body"))
    ic._flush_tasks()
    assert sent == [(b"w0", frames)]
    assert ic.arrived == [] and ic.arrived_frames is None


def test_a_body_the_worker_has_is_left_out_and_one_it_lacks_is_attached():
    ic, sent = interchange(workers=2)
    arrive(ic, task(1, b"body"))
    ic._flush_tasks()
    arrive(ic, task(2, b"body"))  # the executor sends it again; worker 0 is busy, worker 1 knows it not
    ic._flush_tasks()
    ic.ledger.handle(ResultsArrived(b"m", 0, (1,), 0.0, 0.0))
    arrive(ic, task(3, b"body"))  # to worker 0, which has it: left out
    ic._flush_tasks()
    bodies = [[t.fn_body for t in decode(frames).tasks] for _, frames in sent]
    assert [identity for identity, _ in sent] == [b"w0", b"w1", b"w0"]
    assert bodies == [[b"body"], [b"body"], [None]]


def test_two_batches_of_one_wake_up_are_encoded_again_as_the_ledger_cuts_them():
    ic, sent = interchange(workers=2)
    arrive(ic, task(1, b"body"))
    arrive(ic, task(2))
    assert ic.arrived_frames is None
    ic._flush_tasks()
    assert [(identity, [(t.task_id, t.fn_body) for t in decode(frames).tasks]) for identity, frames in sent] == [
        (b"w0", [(1, b"body")]), (b"w1", [(2, b"body")])]
