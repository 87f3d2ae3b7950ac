"""Wire messages of the high-throughput executor: round trips, malformed input, errors that pickle."""
from __future__ import annotations

import dataclasses
import json
import pickle
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsl_lite.errors import ParslError
from parsl_lite.executors.htex import messages as m
from parsl_lite.executors.htex.errors import (
    InterchangeLost, ManagerLost, MalformedMessage, NotAuthenticated, ResultTooLarge, TaskTooLarge, VersionMismatch,
    WorkerLost, describe_exit,
)
from parsl_lite.executors.htex.messages import (
    BIG_PAYLOAD_BYTES, HELLOS, MESSAGES, PROTOCOL_VERSION, UNKNOWN_TASK, Ack, BlockLost, ClientHello, Drain,
    ErrorReply, Heartbeat, HeartbeatAck, HoldBlocks, ManagerStatus, Ping, Register, RegisterReply, ResultBatch,
    ResultFrames, ResultMessage, Shutdown, ShutdownRequest, StatusReply, StatusRequest, TaskBatch, TaskMessage,
    WorkerDied, WorkerHello, WorkerStarted, decode, encode, peek_results,
)

# ---------------------------------------------------------------- strategies

int64 = st.integers(-2**63, 2**63 - 1)
small_int = st.integers(-2**40, 2**40)
text = st.text(max_size=20)
json_scalar = st.none() | st.booleans() | small_int | st.floats(allow_nan=False, allow_infinity=False) | text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(text, inner, max_size=3), max_leaves=8)
json_dict = st.dictionaries(text, json_value, max_size=4)
payload = st.binary(max_size=64)
digest = st.sampled_from([b"\x01" * 32, b"\x02" * 32, b"", b"\xff"])

task = st.builds(TaskMessage, int64, digest, st.none() | payload, payload, st.just({}) | json_dict)
result = st.builds(ResultMessage, int64, st.sampled_from(["ok", "error", "lost"]), payload)

MESSAGE_STRATEGIES = {
    TaskBatch: st.builds(TaskBatch, st.lists(task, max_size=8).map(tuple)),
    ResultBatch: st.builds(ResultBatch, st.lists(result, max_size=8).map(tuple)),
    ClientHello: st.builds(ClientHello, small_int, st.integers(0, 5), text),
    Ping: st.builds(Ping, small_int),
    StatusRequest: st.builds(StatusRequest, small_int),
    HoldBlocks: st.builds(HoldBlocks, small_int, st.lists(text, max_size=4).map(tuple)),
    BlockLost: st.builds(BlockLost, small_int, text, text),
    ShutdownRequest: st.builds(ShutdownRequest, small_int),
    Ack: st.builds(Ack, small_int),
    ErrorReply: st.builds(ErrorReply, small_int, text),
    StatusReply: st.builds(StatusReply, small_int, small_int, small_int, small_int,
                           st.lists(st.builds(ManagerStatus, text, text, text, small_int, small_int, small_int,
                                              st.booleans(), st.booleans()), max_size=3).map(tuple),
                           st.dictionaries(text, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
                           st.dictionaries(text, small_int, max_size=3), small_int, small_int),
    Register: st.builds(Register, st.integers(0, 5), payload, text, text, small_int, small_int, small_int,
                        small_int, text),
    Heartbeat: st.builds(Heartbeat, payload),
    WorkerStarted: st.builds(WorkerStarted, payload, small_int, small_int),
    WorkerDied: st.builds(WorkerDied, payload, small_int, small_int, small_int, small_int),
    Drain: st.builds(Drain, payload),
    WorkerHello: st.builds(WorkerHello, st.integers(0, 5), payload, small_int, small_int),
    RegisterReply: st.builds(RegisterReply, st.booleans(), text,
                             st.floats(allow_nan=False, allow_infinity=False)),
    Shutdown: st.builds(Shutdown, text),
    HeartbeatAck: st.just(HeartbeatAck()),
}
any_message = st.one_of(*MESSAGE_STRATEGIES.values())


def parts(frames: list[bytes]) -> list[bytes]:
    """A batch's frames cut as protocol 3 sent them, ``[kind, header, index, blob, *own]``, to spoil one part."""
    kind, header, rest = frames[0].split(b"\n", 2)
    fields = json.loads(header)
    ints = 3 * fields[0] + (len(fields[2]) if kind == b"task_batch" else 1)
    return [kind, header, rest[:8 * ints], rest[8 * ints:], *frames[1:]]


def join(kind: bytes, header: bytes, index: bytes, blob: bytes, *own: bytes) -> list[bytes]:
    """The frames of a batch from its parts: kind, header, index and blob in one frame (protocol 4)."""
    return [kind + b"\n" + header + b"\n" + index + blob, *own]


# ---------------------------------------------------------------- the table

def test_every_message_class_has_a_strategy_and_a_unique_kind():
    assert set(MESSAGE_STRATEGIES) == set(MESSAGES.values())
    for kind, cls in MESSAGES.items():
        assert cls.kind == kind
        assert dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__
        assert cls.__dataclass_params__.frozen


def test_messages_module_does_not_use_pickle():
    from parsl_lite.executors.htex import codec, wire_auth
    for module in (m, codec, wire_auth):
        assert not hasattr(module, "pickle")
        assert "import pickle" not in open(module.__file__).read() and "loads(" not in open(wire_auth.__file__).read()


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("cls", list(MESSAGE_STRATEGIES), ids=lambda c: c.__name__)
def test_round_trip(cls):
    @settings(max_examples=150, deadline=None)
    @given(MESSAGE_STRATEGIES[cls])
    def check(msg):
        frames = encode(msg)
        assert all(type(f) is bytes for f in frames)
        batch = cls in (TaskBatch, ResultBatch)  # one frame: kind, header, index, blob
        assert frames[0].startswith(cls.kind.encode() + b"\n") if batch else frames[0] == cls.kind.encode()
        assert decode(frames) == msg
        assert decode(list(frames)) == msg

    check()


def test_task_batch_layout_is_compact_and_payloads_are_not_re_encoded():
    tasks = tuple(TaskMessage(i, b"d" * 32, b"BODY" if i == 0 else None, b"ARGS%d" % i, {}) for i in range(100))
    frames = encode(TaskBatch(tasks))
    assert len(frames) == 1  # kind, header, index and one blob for all small payloads, in one frame
    assert parts(frames)[3] == b"".join(t.args for t in tasks) + b"BODY"
    decoded = decode(frames).tasks
    assert decoded[0].fn_body == b"BODY" and decoded[1].fn_body is None
    assert decoded[5].fn_digest is decoded[6].fn_digest  # one bytes object per distinct digest


def test_big_payloads_travel_in_frames_of_their_own_untouched():
    big_args, big_body = b"a" * BIG_PAYLOAD_BYTES, b"b" * (BIG_PAYLOAD_BYTES + 1)
    tasks = (TaskMessage(1, b"x", big_body, b"small", {"cores": 2}), TaskMessage(2, b"y", None, big_args, {}),
             TaskMessage(3, b"x", None, b"", {}))
    frames = encode(TaskBatch(tasks))
    assert len(frames) == 3 and frames[1] is big_args and frames[2] is big_body
    assert decode(frames) == TaskBatch(tasks)
    results = (ResultMessage(1, "ok", big_args), ResultMessage(2, "lost", b"x"), ResultMessage(3, "error", b""))
    frames = encode(ResultBatch(results))
    assert frames[1] is big_args
    assert decode(frames) == ResultBatch(results)


def test_new_optional_pid_fields_default_to_zero():
    assert WorkerHello(PROTOCOL_VERSION, b"m", 1) == decode(encode(WorkerHello(PROTOCOL_VERSION, b"m", 1, 0)))
    assert WorkerDied(b"m", 1, -9).pid == 0
    assert WorkerDied(b"m", 1, -9).running_task == UNKNOWN_TASK


def test_every_hello_carries_the_protocol_version():
    assert {cls.kind for cls in HELLOS} == {"client_hello", "register", "worker_hello"}
    for cls in HELLOS:
        assert "protocol_version" in cls.__dataclass_fields__


def test_status_reply_fields_are_typed_on_the_way_back():
    reply = StatusReply(3, 1, 2, 4, (ManagerStatus("ab", "0", "h", 2, 2, 1, False, True),), {"0": 1}, {"0": 1})
    back = decode(encode(reply))
    assert back == reply and type(back.managers[0]) is ManagerStatus and type(back.block_idle_s["0"]) is float
    assert StatusReply.empty() == StatusReply(0, 0, 0, 0, (), {}, {})
    rest = b',"block_busy":{},"refused":0,"dropped":0}'
    malformed([b"status_reply", b'{"request_id":1,"pending":0,"outstanding":0,"connected_workers":0,'
                                b'"managers":[[1]],"block_idle_s":{}' + rest], "status_reply")
    malformed([b"status_reply", b'{"request_id":1,"pending":0,"outstanding":0,"connected_workers":0,'
                                b'"managers":[],"block_idle_s":{"0":"x"}' + rest], "status_reply")
    malformed([b"hold_blocks", b'{"request_id":1,"block_ids":"0"}'], "hold_blocks")
    malformed([b"hold_blocks", b'{"request_id":1,"block_ids":[0]}'], "hold_blocks")


@settings(max_examples=150, deadline=None)
@given(MESSAGE_STRATEGIES[ResultBatch])
def test_peek_reads_the_ids_of_a_result_batch_and_leaves_its_frames_alone(batch):
    frames = encode(batch)
    peeked = peek_results(frames)
    assert type(peeked) is ResultFrames
    assert peeked.task_ids == [r.task_id for r in batch.results] and peeked.frames is frames
    assert decode(peeked.frames) == batch


@pytest.mark.parametrize("results", [(), (ResultMessage(1, "ok", b"x"), ResultMessage(2, "error", b"y" * 70000))])
def test_a_result_batch_carries_the_workers_busy_time_to_peek_and_decode(results):
    frames = encode(ResultBatch(results, busy_s=0.25))
    assert peek_results(frames).busy_s == 0.25
    assert decode(frames) == ResultBatch(results, 0.25)
    assert decode(encode(ResultBatch(results))).busy_s == 0.0  # a sender that runs nothing
    with pytest.raises(ValueError):
        encode(ResultBatch(results, busy_s=-1.0))
    kind, header, index, blob, *own = parts(frames)
    index = bytearray(index)
    index[-8:] = (-5).to_bytes(8, "little", signed=True)
    with pytest.raises(MalformedMessage):
        peek_results(join(kind, header, bytes(index), blob, *own))


def test_peek_decodes_every_other_message_and_refuses_what_decode_refuses():
    assert peek_results(encode(Heartbeat(b"m"))) == Heartbeat(b"m")
    good = parts(encode(ResultBatch((ResultMessage(1, "ok", b"x" * 10), ResultMessage(2, "error", b"y")))))
    for bad in (join(*good[:3], b""), join(*good) + [b"stray"], join(good[0], good[1], good[2][:-1], good[3]),
                join(good[0], good[1], good[2], good[3] + b"!"), join(good[0], b"[3]", good[2], good[3]),
                [good[0], good[1], good[2], good[3]], [good[0] + b"\n" + good[1]]):
        with pytest.raises(MalformedMessage):
            peek_results(bad)
    index = bytearray(good[2])
    index[16] = 9  # status code 9
    with pytest.raises(MalformedMessage):
        peek_results(join(good[0], good[1], bytes(index), good[3]))


def test_encode_refuses_what_it_cannot_carry():
    with pytest.raises(ValueError):
        encode(ResultBatch((ResultMessage(1, "maybe", b""),)))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode(RegisterReply(True, "", float("nan")))
    with pytest.raises(TypeError):
        encode(ErrorReply(1, object()))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a message"):
        encode("not a message")  # type: ignore[arg-type]


# ---------------------------------------------------------------- malformed input

def malformed(frames, kind=None):
    with pytest.raises(MalformedMessage) as info:
        decode(frames)
    assert info.value.kind == kind
    return info.value


def test_unknown_kind_and_too_few_frames():
    malformed([b"nonsense", b"{}"])
    malformed([])
    malformed([b"heartbeat"])
    malformed(None)  # type: ignore[arg-type]
    malformed([b"heartbeat", "{}", b"id"])  # type: ignore[list-item]


def test_small_message_field_errors_name_the_problem():
    assert "missing fields ['reason']" in str(malformed([b"shutdown", b"{}"], "shutdown"))
    assert "unexpected fields ['extra']" in str(malformed([b"shutdown", b'{"reason":"x","extra":1}'], "shutdown"))
    assert "'request_id'" in str(malformed([b"block_lost", b'{"request_id":true,"block_id":"x","reason":""}'],
                                           "block_lost"))
    malformed([b"block_lost", b'{"request_id":1.5,"block_id":"x","reason":""}'], "block_lost")
    malformed([b"block_lost", b'{"request_id":1,"block_id":[],"reason":""}'], "block_lost")
    malformed([b"heartbeat", b"{}"], "heartbeat")                   # the manager_id frame is missing
    malformed([b"heartbeat", b"{}", b"id", b"extra"], "heartbeat")
    malformed([b"shutdown", b"[1, 2]"], "shutdown")
    malformed([b"register_reply", b'{"accepted":1,"reason":"","heartbeat_period_s":1}'], "register_reply")
    malformed([b"register_reply", b'{"accepted":true,"reason":"","heartbeat_period_s":NaN}'], "register_reply")
    malformed([b"shutdown", b"\xff\xfe"], "shutdown")
    malformed([b"shutdown", b"[" * 100_000], "shutdown")


def test_a_number_header_field_accepts_an_integer():
    reply = decode([b"register_reply", b'{"accepted":true,"reason":"","heartbeat_period_s":2}'])
    assert reply == RegisterReply(True, "", 2.0) and type(reply.heartbeat_period_s) is float


def test_batch_structure_errors():
    good = parts(encode(TaskBatch((TaskMessage(1, b"d", b"body", b"args", {}),))))
    malformed(join(*good[:3], b""), "task_batch")
    malformed(join(*good) + [b"stray"], "task_batch")
    malformed(join(good[0], good[1], good[2][:-1], good[3]), "task_batch")
    malformed(join(good[0], good[1], good[2], good[3] + b"!"), "task_batch")
    malformed([good[0] + b"\n" + good[1]], "task_batch")                                    # no end of header
    malformed(join(good[0], good[1], b"", b""), "task_batch")                                # index cut short
    malformed(join(good[0], b'[1,["zz"],[0],[]]', good[2], good[3]), "task_batch")       # not hex
    malformed(join(good[0], b'[1,[],[0],[]]', good[2], good[3]), "task_batch")           # digest number out of range
    malformed(join(good[0], b'[1,["64"],[1],[]]', good[2], good[3]), "task_batch")        # body of task 1 of 1
    malformed(join(good[0], b'[1,["64"],[0],[[0,{}]]]', good[2], good[3]), "task_batch")  # empty spec listed
    malformed(join(good[0], b'[-1,["64"],[0],[]]', good[2], good[3]), "task_batch")
    malformed(good[:4], None)                                     # protocol 3's four frames: no such kind
    results = parts(encode(ResultBatch((ResultMessage(1, "ok", b"x"),))))
    index = bytearray(results[2])
    index[8] = 7  # status code 7
    malformed(join(results[0], results[1], bytes(index), results[3]), "result_batch")
    index = bytearray(results[2])
    index[16:24] = (-5).to_bytes(8, "little", signed=True)  # negative length
    malformed(join(results[0], results[1], bytes(index), results[3]), "result_batch")


@pytest.mark.parametrize("kind", ["register", "worker_hello", "client_hello"])
def test_a_hello_of_another_version_that_cannot_be_read_is_a_version_mismatch(kind):
    header = {"protocol_version": PROTOCOL_VERSION + 1, "new_field": 1}
    with pytest.raises(VersionMismatch) as info:
        decode([kind.encode(), json.dumps(header).encode(), b"id"])
    assert info.value.theirs == PROTOCOL_VERSION + 1 and info.value.ours == PROTOCOL_VERSION
    assert info.value.kind == kind and isinstance(info.value, MalformedMessage)
    assert f"version {PROTOCOL_VERSION + 1}" in str(info.value) and f"version {PROTOCOL_VERSION}" in str(info.value)


def test_register_of_another_version_that_can_be_read_decodes():
    # readable, but another version: decodes; the ledger refuses it with a reason
    other = Register(PROTOCOL_VERSION + 1, b"id", "0", "host", 1, 2, 3, 4, "3.11")
    assert decode(encode(other)) == other
    # same version, broken: plainly malformed
    header = {"protocol_version": PROTOCOL_VERSION}
    with pytest.raises(MalformedMessage) as plain:
        decode([b"register", json.dumps(header).encode(), b"id"])
    assert not isinstance(plain.value, VersionMismatch)


def test_pickled_bytes_are_never_unpickled():
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a peer made us unpickle its bytes",))

    evil = pickle.dumps(Boom())
    for kind in MESSAGES:
        with pytest.raises(MalformedMessage):
            decode([kind.encode(), evil])
        with pytest.raises(MalformedMessage):
            decode([kind.encode(), evil, evil, evil])


frame = st.binary(max_size=40)
kind_frame = st.sampled_from(sorted(k.encode() for k in MESSAGES)) | frame


def decodes_or_refuses(frames):
    try:
        msg = decode(frames)
    except MalformedMessage:
        return
    assert decode(encode(msg)) == msg  # whatever is accepted is a well-formed message


@settings(max_examples=500, deadline=None)
@given(st.lists(frame, max_size=6))
def test_fuzz_arbitrary_frames(frames):
    decodes_or_refuses(frames)


@settings(max_examples=500, deadline=None)
@given(kind_frame, st.lists(frame, max_size=6))
def test_fuzz_known_kinds_with_arbitrary_frames(kind, rest):
    decodes_or_refuses([kind, *rest])


header_value = json_value | st.lists(json_value, max_size=5) | st.dictionaries(
    st.sampled_from(["reason", "manager_id", "worker_index", "pid", "exitcode", "protocol_version", "x"]),
    json_value, max_size=5)


@settings(max_examples=500, deadline=None)
@given(kind_frame, header_value, st.lists(frame, max_size=4))
def test_fuzz_json_headers(kind, header, rest):
    decodes_or_refuses([kind, json.dumps(header).encode(), *rest])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_message, st.data())
def test_fuzz_mutated_valid_messages(msg, data):
    frames = encode(msg)
    mutation = data.draw(st.sampled_from(["replace", "truncate", "drop", "add", "flip"]))
    i = data.draw(st.integers(0, len(frames) - 1))
    if mutation == "replace":
        frames[i] = data.draw(frame)
    elif mutation == "truncate":
        frames[i] = frames[i][:data.draw(st.integers(0, max(0, len(frames[i]) - 1)))]
    elif mutation == "drop":
        del frames[i]
    elif mutation == "add":
        frames.insert(i, data.draw(frame))
    elif frames[i]:
        j = data.draw(st.integers(0, len(frames[i]) - 1))
        frames[i] = frames[i][:j] + bytes([frames[i][j] ^ data.draw(st.integers(1, 255))]) + frames[i][j + 1:]
    decodes_or_refuses(frames)


# ---------------------------------------------------------------- errors

ERRORS = [
    WorkerLost(7, "node1", 3, -signal.SIGKILL),
    WorkerLost(8, "node1", "w2", "it connected again"),
    ManagerLost(9, b"\x01\x02", "node2", "no heartbeat for 3.2 s (threshold 2 s)"),
    InterchangeLost("the interchange process exited with code -9"),
    MalformedMessage("heartbeat", "missing fields ['x']"),
    MalformedMessage(None, "unknown kind b'x'"),
    VersionMismatch(2, 1),
    VersionMismatch(3, 2, "worker_hello"),
    NotAuthenticated("no proof frame"),
    ResultTooLarge(4, 2_000_000, 1_000_000),
    TaskTooLarge(20_000_000, 10_000_000),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_and_keep_their_message_and_fields(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert {k: v for k, v in vars(copy).items()} == {k: v for k, v in vars(error).items()}
    assert isinstance(copy, ParslError)


def test_error_messages_say_what_where_and_why():
    text = str(WorkerLost(7, "node1", 3, -9))
    assert "task 7" in text and "node1" in text and "worker 3" in text and "SIGKILL" in text
    assert "out of memory" in text
    text = str(ManagerLost(9, b"\x01\x02", "node2", "no heartbeat for 3.2 s (threshold 2 s)"))
    assert "task 9" in text and "0102" in text and "node2" in text and "3.2 s" in text
    assert "20000000" in str(TaskTooLarge(20_000_000, 10_000_000))
    assert "version 2" in str(VersionMismatch(2, 1)) and "version 1" in str(VersionMismatch(2, 1))
    text = str(ResultTooLarge(4, 2_000_000, 1_000_000))
    assert "task 4" in text and "2000000 bytes" in text and "1000000 bytes" in text


@pytest.mark.parametrize("code, words", [
    (-9, "killed by SIGKILL — out of memory"), (-11, "SIGSEGV"), (-15, "SIGTERM"), (137, "137, i.e. killed by SIGKILL"),
    (1, "exit code 1"), (0, "sys.exit"), (-200, "signal 200"), (3, "sys.exit(3)"),
])
def test_describe_exit(code, words):
    assert words in describe_exit(code)
