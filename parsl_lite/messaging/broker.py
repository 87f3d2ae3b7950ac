"""The broker daemon: queues and tables over plain TCP connections, topics through the forwarder thread.

::

    clients (a socket per thread) --requests--> selector --> Broker.handle --> QueueBook (pure) --> actions --> Store
                                  <--replies---          (after the turn's commit)
    publishers (XPUB) ---> XSUB [Forwarder thread] XPUB ---> subscribers (SUB)

One thread runs the request loop: each turn it reads every request that has
come (from all connections), handles each (a ``get`` with nothing ready
waits in ``_waiters`` until a message comes or its timeout passes), expires
deliveries past their visibility deadline, commits the store once (group
commit: one commit for all the turn's puts), and only then sends the
replies: an answered ``put`` is durable. ``python -m
parsl_lite.messaging.broker --dir DIR`` runs it; the CLI (``parsl-lite broker
start``) does that detached.
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import secrets
import selectors
import signal
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import zmq
from zmq.auth.thread import ThreadAuthenticator

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.book import DEAD_LETTER_SUFFIX, DeadLetter, Delete, QueueBook, QueueSettings
from parsl_lite.messaging.errors import MalformedMessage, MessageTooLarge
from parsl_lite.messaging.forwarder import PLAIN_USER, Forwarder
from parsl_lite.messaging.paths import INFO_FILE, write_private
from parsl_lite.messaging.store import COMMIT_PERIOD_S, Store

logger = logging.getLogger(__name__)

@dataclass
class _Waiter:
    identity: Any                  # the connection the reply goes to
    request: p.GetMessages
    deadline: float


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class Broker:
    """The request loop's state. ``handle`` is called with the time; the shell around it does the I/O."""

    def __init__(self, store: Store, token: str, forwarder: Optional[Forwarder],
                 accepts: Optional[Callable[[str], bool]] = None) -> None:
        self.store, self.token, self.forwarder = store, token, forwarder
        self.accepts = accepts or self.is_own_token   # the service's broker also accepts its users' tokens
        self.broker_id = uuid.uuid4().hex
        self.books: dict[str, QueueBook] = {}
        # receipts of this run start past those of any earlier run (fewer than a million deliveries a second)
        self._first_receipt = time.time_ns() // 1000
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._handlers: dict[type, Callable[[Any, float], Optional[p.Reply]]] = {
            p.Hello: self._hello, p.DeclareQueue: self._declare, p.DeleteQueue: self._delete_queue,
            p.QueueStatsRequest: self._queue_stats, p.PutMessages: self._put, p.GetMessages: self._get,
            p.Settle: self._settle, p.TablePut: self._table_put, p.TableGet: self._table_get,
            p.TableScan: self._table_scan, p.ReportLoss: self._report_loss, p.StatsRequest: self._stats,
        }
        self._current: Any = None
        self._next_expiry = 0.0          # no delivery expires before this (next_wakeup's; tick is due then)
        self.outbox: list[tuple[Any, p.Reply]] = []   # replies due outside a request (a waiter's queue deleted)
        for name, (settings, entries) in store.load().items():
            book = self.books[name] = QueueBook(name, settings, self._first_receipt)
            for seq, message_id, size, enqueued_at, receive_count in entries:
                book.put(seq, message_id, size, enqueued_at, receive_count)
        self.addresses: dict[str, str] = {}

    # ------------------------------------------------------------ one request

    def handle(self, identity: Any, frames: list[bytes], now: float) -> Optional[p.Reply]:
        """The reply to one request, or None when it waits (a ``get`` with nothing ready)."""
        try:
            request = p.decode(frames)
        except MalformedMessage as exc:
            logger.warning("malformed request: %s", exc)
            return p.ErrorReply(0, "bad_request", str(exc))
        handler = self._handlers.get(type(request))
        if handler is None:
            return p.ErrorReply(getattr(request, "request_id", 0), "bad_request", f"{request.kind} is not a request")
        if not self.accepts(request.token):
            return p.ErrorReply(request.request_id, "auth", "wrong token for this broker")
        self._current = identity
        try:
            return handler(request, now)
        except _Refused as exc:
            return p.ErrorReply(request.request_id, exc.code, exc.text)
        except MessageTooLarge as exc:
            return p.ErrorReply(request.request_id, "too_large", str(exc))
        except ValueError as exc:
            return p.ErrorReply(request.request_id, "bad_request", str(exc))

    def forget(self, identity: Any) -> None:
        """A client went away: its waiting ``get`` s end (nothing is delivered to nobody)."""
        for name, waiters in list(self._waiters.items()):
            kept = deque(w for w in waiters if w.identity is not identity)
            if len(kept) != len(waiters):
                self._waiters[name] = kept

    def is_own_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def _book(self, name: str) -> QueueBook:
        try:
            return self.books[name]
        except KeyError:
            raise _Refused("no_such_queue", name) from None

    def _hello(self, req: p.Hello, now: float) -> p.Reply:
        if req.protocol_version != p.PROTOCOL_VERSION:
            return p.ErrorReply(req.request_id, "version", f"client speaks protocol {req.protocol_version}, "
                                                           f"this broker {p.PROTOCOL_VERSION}")
        logger.info("hello from %s", req.client)
        return p.Welcome(req.request_id, self.broker_id, p.PROTOCOL_VERSION,
                         self.addresses.get("publish", ""), self.addresses.get("subscribe", ""))

    def _declare(self, req: p.DeclareQueue, now: float) -> p.Reply:
        book = self.books.get(req.queue)
        if book is None and not req.create:
            raise _Refused("no_such_queue", req.queue)
        old = book.settings if book else QueueSettings(
            dead_letter_queue="" if req.queue.endswith(DEAD_LETTER_SUFFIX) else req.queue + DEAD_LETTER_SUFFIX)
        settings = QueueSettings(req.visibility_timeout_s or old.visibility_timeout_s,
                                 req.max_receives or old.max_receives, req.max_bytes or old.max_bytes,
                                 old.dead_letter_queue)
        if book is None:
            book = self.books[req.queue] = QueueBook(req.queue, settings, self._first_receipt)
            self.store.save_queue(req.queue, settings)
        elif settings != old:
            book.settings = settings
            self.store.save_queue(req.queue, settings)
        return self._info(req.request_id, book, now)

    def _info(self, request_id: int, book: QueueBook, now: float) -> p.QueueInfo:
        s = book.settings
        return p.QueueInfo(request_id, book.name, book.length, book.in_flight, book.oldest_age_s(now),
                           s.visibility_timeout_s, s.max_receives, s.max_bytes, s.dead_letter_queue)

    def _queue_stats(self, req: p.QueueStatsRequest, now: float) -> p.Reply:
        return self._info(req.request_id, self._book(req.queue), now)

    def _delete_queue(self, req: p.DeleteQueue, now: float) -> p.Reply:
        book = self._book(req.queue)
        del self.books[req.queue]
        self.store.delete_queue(req.queue)
        for waiter in self._waiters.pop(req.queue, ()):
            self.outbox.append((waiter.identity, p.ErrorReply(waiter.request.request_id, "no_such_queue", req.queue)))
        return p.Done(req.request_id, book.length)

    def _put(self, req: p.PutMessages, now: float) -> p.Reply:
        book = self._book(req.queue)
        if len(req.message_ids) != len(req.sizes):
            raise _Refused("bad_request", f"{len(req.message_ids)} message ids for {len(req.sizes)} bodies")
        if req.sizes:
            book.check_size(max(req.sizes))
        bodies = p.split_bodies(req.sizes, req.blob)
        ids = req.message_ids
        if any(map(book.holds, ids)):
            new = [(i, b) for i, b in zip(ids, bodies) if not book.holds(i)]
            ids, bodies = tuple(i for i, _ in new), [b for _, b in new]
        for seq, message_id, size in self.store.insert(req.queue, ids, bodies, now):
            book.put(seq, message_id, size, now)
        return p.Done(req.request_id, len(req.sizes))

    def _get(self, req: p.GetMessages, now: float) -> Optional[p.Reply]:
        book = self._book(req.queue)
        if req.max_messages < 1:
            raise _Refused("bad_request", f"max_messages: need >= 1, got {req.max_messages}")
        if book.has_ready() or req.timeout_s <= 0:
            return self._deliver(req, book, now)
        self._waiters.setdefault(req.queue, deque()).append(_Waiter(self._current, req, now + req.timeout_s))
        return None

    def _deliver(self, req: p.GetMessages, book: QueueBook, now: float) -> p.Delivered:
        deliveries = book.receive(now, req.max_messages)
        seqs = [d.seq for d in deliveries]
        counts = tuple(d.receive_count for d in deliveries)
        if deliveries:
            self.store.set_receive_counts(seqs, counts)
        sizes, blob = p.join_bodies(self.store.bodies(seqs) if deliveries else [])
        return p.Delivered(req.request_id, req.queue, tuple(d.message_id for d in deliveries),
                           tuple(d.receipt for d in deliveries), counts,
                           tuple(d.enqueued_at for d in deliveries), sizes, blob)

    def _settle(self, req: p.Settle, now: float) -> p.Reply:
        book = self._book(req.queue)
        actions = book.settle_many(req.receipts, req.ack, now)
        self._apply(book, actions)
        return p.Done(req.request_id, len(actions))

    def _apply(self, book: QueueBook, actions: list) -> None:
        if not actions:
            return
        self.store.delete([a.seq for a in actions if type(a) is Delete])
        for action in actions:
            if type(action) is DeadLetter:
                self._dead_letter(action)

    def _dead_letter(self, action: DeadLetter) -> None:
        entry, target = action.entry, action.dead_letter_queue
        if not target:
            self.store.delete([entry.seq])
            return
        dead = self.books.get(target)
        if dead is None:
            dead = self.books[target] = QueueBook(target, QueueSettings(), self._first_receipt)
            self.store.save_queue(target, dead.settings)
        seq = self.store.move(entry.seq, target)
        dead.put(seq, entry.message_id, entry.size, entry.enqueued_at)
        logger.info("dead-lettered %s after %d receives to %s", entry.message_id, entry.receive_count, target)

    def _table_put(self, req: p.TablePut, now: float) -> p.Reply:
        self.store.table_put(req.table, req.key, req.value)
        return p.Done(req.request_id, 1)

    def _table_get(self, req: p.TableGet, now: float) -> p.Reply:
        value = self.store.table_get(req.table, req.key)
        return p.TableValue(req.request_id, value is not None, value or b"")

    def _table_scan(self, req: p.TableScan, now: float) -> p.Reply:
        rows = self.store.table_scan(req.table, req.prefix)
        sizes, blob = p.join_bodies([v for _, v in rows])
        return p.TableRows(req.request_id, tuple(k for k, _ in rows), sizes, blob)

    def _report_loss(self, req: p.ReportLoss, now: float) -> p.Reply:
        if self.forwarder is not None and req.lost > 0:
            self.forwarder.add_loss(req.topic, req.lost)
        return p.Done(req.request_id, req.lost)

    def _stats(self, req: p.StatsRequest, now: float) -> p.Reply:
        queues = {name: {"length": b.length, "in_flight": b.in_flight, "oldest_age_s": b.oldest_age_s(now),
                         "dead_lettered": b.dead_lettered} for name, b in self.books.items()}
        topics = self.forwarder.stats() if self.forwarder is not None else {}
        return p.Stats(req.request_id, {"broker_id": self.broker_id, "pid": os.getpid(), "queues": queues,
                                        "topics": topics, "waiting_readers": sum(map(len, self._waiters.values()))})

    # ------------------------------------------------------------ time passes

    def tick(self, now: float) -> list[tuple[Any, p.Reply]]:
        """Expire deliveries, serve waiting readers, time out the others; the replies to send (after commit)."""
        if not (self.outbox or self._waiters or now >= self._next_expiry):
            return []       # the common turn: nothing due (checked in O(1), not per queue)
        out, self.outbox = self.outbox, []
        for book in list(self.books.values()):
            self._apply(book, book.expire(now))
        for name, waiters in list(self._waiters.items()):
            book = self.books.get(name)
            if book is None:
                continue
            while waiters and book.has_ready():
                waiter = waiters.popleft()
                out.append((waiter.identity, self._deliver(waiter.request, book, now)))
            for waiter in [w for w in waiters if w.deadline <= now]:
                waiters.remove(waiter)
                out.append((waiter.identity, self._deliver(waiter.request, book, now)))
            if not waiters:
                del self._waiters[name]
        return out

    def next_wakeup(self, now: float) -> float:
        """Seconds until something is due (a deadline of a delivery or of a waiting reader), at most 0.2."""
        due = now + 0.2
        for book in self.books.values():
            deadline = book.next_deadline()
            if deadline is not None and deadline < due:
                due = deadline
        self._next_expiry = due
        for waiters in self._waiters.values():
            for waiter in waiters:
                due = min(due, waiter.deadline)
        return max(0.0, due - now)


class _Connection:
    """One client connection: what it sent that is not a whole message yet, what could not be sent yet."""
    __slots__ = ("sock", "inbox", "pending", "open")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.inbox, self.pending, self.open = sock, bytearray(), b"", True

    def messages(self) -> list[list[bytes]]:
        """The whole messages received so far (their frames), removed from the inbox."""
        out, at, inbox = [], 0, self.inbox
        while True:
            size = p.stream_size(inbox, at)
            if not size or len(inbox) - at < size:
                break
            out.append(p.stream_frames(inbox, at, size))
            at += size
        if at:
            del inbox[:at]
        return out

    def send(self, parts: list[bytes]) -> bool:
        """Send now what the socket takes; True if some is left for when it is writable."""
        if self.pending:
            self.pending += b"".join(parts)
            return True
        try:
            sent = self.sock.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        if sent < sum(map(len, parts)):
            self.pending = b"".join(parts)[sent:]
        return bool(self.pending)

    def flush(self) -> bool:
        """Send more of what was left; True if some is still left."""
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            sent = 0
        self.pending = self.pending[sent:]
        return bool(self.pending)


class _Server:
    """The listening socket and the client connections, in one selector (no I/O thread)."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.closed: list[_Connection] = []     # since the loop last told the broker
        self._scratch = bytearray(_RECV_BYTES)   # recv_into it: no allocation (and mmap) per read
        self._view = memoryview(self._scratch)

    def wait(self, timeout_s: float) -> list[tuple[_Connection, list[bytes]]]:
        """The requests that came within ``timeout_s`` (all those there are, once one has)."""
        out: list[tuple[_Connection, list[bytes]]] = []
        for key, events in self.selector.select(timeout_s):
            conn = key.data
            if conn is None:
                self._accept()
                continue
            if events & selectors.EVENT_WRITE:
                try:
                    if not conn.flush():
                        self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
                except OSError:            # the client went away with replies unread
                    self.close(conn)
                    continue
            if events & selectors.EVENT_READ:
                try:
                    n = conn.sock.recv_into(self._scratch)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                if not n:
                    self.close(conn)
                    continue
                conn.inbox += self._view[:n]
                try:
                    out += [(conn, frames) for frames in conn.messages()]
                except MalformedMessage as exc:
                    logger.warning("closing a connection that sent no message of ours: %s", exc)
                    self.close(conn)
        return out

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:       # out of file descriptors, ...: the next turn tries again
                logger.warning("accept failed: %r", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, _Connection(sock))

    def send(self, conn: _Connection, reply: p.Reply) -> None:
        if not conn.open:
            return
        try:
            if conn.send(p.stream_parts(p.encode(reply))):
                self.selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        except OSError:
            self.close(conn)

    def close(self, conn: _Connection) -> None:
        if conn.open:
            conn.open = False
            self.selector.unregister(conn.sock)
            conn.sock.close()
            self.closed.append(conn)

    def shutdown(self) -> None:
        self._view.release()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()        # type: ignore[union-attr]
        self.selector.close()


_RECV_BYTES = 256 * 1024


def serve(broker: Broker, listener: socket.socket, stopping: Callable[[], bool]) -> None:
    """The I/O loop: read what came, handle it, tick, commit once (what the replies promise), reply to all."""
    server = _Server(listener)
    last_commit = time.monotonic()
    try:
        while not stopping():
            requests = server.wait(broker.next_wakeup(time.time()))
            now = time.time()
            replies: list[tuple[Any, p.Reply]] = []
            for conn, frames in requests:
                reply = broker.handle(conn, frames, now)
                if reply is not None:
                    replies.append((conn, reply))
            if server.closed:
                for conn in server.closed:
                    broker.forget(conn)
                server.closed = []
            replies += broker.tick(time.time())
            if broker.store.promised or time.monotonic() - last_commit > COMMIT_PERIOD_S:
                broker.store.commit()
                last_commit = time.monotonic()
            for conn, reply in replies:
                server.send(conn, reply)
    finally:
        server.shutdown()


# ---------------------------------------------------------------- the daemon

def _token(directory: Path) -> str:
    path = directory / "token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(24)
        write_private(path, token)
        return token


def _ports(directory: Path, asked: dict[str, Any]) -> dict[str, int]:
    """Asked-for ports, else the last run's (clients keep dialling them across a restart), else any."""
    try:
        last = json.loads((directory / "ports.json").read_text())
    except (OSError, ValueError):
        last = {}
    return {name: int(asked.get(name) or 0) or int(last.get(name, 0))
            for name in ("port", "publish_port", "subscribe_port")}


class TokenAuthenticator(ThreadAuthenticator):
    """ZAP for the topic sockets: PLAIN user ``parsl_lite`` with any password ``accepts`` takes."""

    def __init__(self, context: zmq.Context, accepts: Callable[[str], bool]) -> None:
        super().__init__(context)
        self._accepts = accepts

    def _authenticate_plain(self, domain: str, username: str, password: str) -> tuple[bool, bytes]:
        if username != PLAIN_USER:
            return False, b"Invalid username"
        return (True, b"OK") if self._accepts(password) else (False, b"Invalid password")


def advertised(address: str, host: str) -> str:
    """``tcp://BIND:PORT`` as clients should dial it: ``tcp://HOST:PORT`` (unchanged when ``host`` is empty)."""
    return f"tcp://{host}:{address.rsplit(':', 1)[1]}" if host else address


class RunningBroker:
    """A broker's sockets, store and forwarder in ``directory``: the daemon's (``main``) or the function
    service's (``serve`` in a thread of its own, the service's token check passed as ``accepts``)."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", advertise: str = "", ports: Optional[dict] = None,
                 accepts: Optional[Callable[[str], bool]] = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.token = _token(directory)
        ports = _ports(directory, ports or {})
        self.context = zmq.Context()
        self.broker = Broker(Store(directory / "broker.db"), self.token, None, accepts)
        self.auth = TokenAuthenticator(self.context, self.broker.accepts)
        self.auth.start()
        self.auth.configure_plain(domain="parsl_lite", passwords={PLAIN_USER: self.token})
        self.listener = socket.create_server((host, ports["port"]), backlog=128)
        ports["port"] = self.listener.getsockname()[1]
        forwarder = self.broker.forwarder = Forwarder(self.context, host, ports["publish_port"],
                                                      ports["subscribe_port"])
        ports["publish_port"] = int(forwarder.publish_address.rsplit(":", 1)[1])
        ports["subscribe_port"] = int(forwarder.subscribe_address.rsplit(":", 1)[1])
        (directory / "ports.json").write_text(json.dumps(ports))
        self.broker.addresses = {"publish": advertised(forwarder.publish_address, advertise),
                                 "subscribe": advertised(forwarder.subscribe_address, advertise)}
        self.address = advertised(f"tcp://{host}:{ports['port']}", advertise)
        forwarder.start()
        self.stopping = False

    @property
    def public_info(self) -> dict[str, Any]:
        """Where clients dial (no token)."""
        return {"address": self.address, "publish_address": self.broker.addresses["publish"],
                "subscribe_address": self.broker.addresses["subscribe"], "broker_id": self.broker.broker_id}

    def serve(self) -> None:
        """The request loop until :meth:`stop_soon`; closes everything when it ends."""
        logger.info("broker %s up: %s, queues %s", self.broker.broker_id, self.address, sorted(self.broker.books))
        try:
            serve(self.broker, self.listener, lambda: self.stopping)
        finally:
            logger.info("broker stopping")
            assert self.broker.forwarder is not None
            self.broker.forwarder.stop()
            self.broker.forwarder.join(2)
            self.broker.store.close()
            self.auth.stop()

    def stop_soon(self) -> None:
        self.stopping = True


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parsl_lite.messaging.broker")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind")
    parser.add_argument("--advertise", default="", help="the host clients and workers dial (default: --host)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--publish-port", type=int, default=0)
    parser.add_argument("--subscribe-port", type=int, default=0)
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=directory / "broker.log", level=logging.INFO,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    running = RunningBroker(directory, args.host, args.advertise, vars(args))
    signal.signal(signal.SIGTERM, lambda *_: running.stop_soon())
    signal.signal(signal.SIGINT, lambda *_: running.stop_soon())
    info = {**running.public_info, "token": running.token, "pid": os.getpid(), "host": socket.gethostname()}
    write_private(directory / INFO_FILE, json.dumps(info))
    (directory / "broker.pid").write_text(str(os.getpid()))
    try:
        running.serve()
    finally:
        for name in (INFO_FILE, "broker.pid"):
            (directory / name).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
