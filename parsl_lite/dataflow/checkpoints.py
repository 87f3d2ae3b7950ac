"""Checkpoints: the file of memoized results that survives crashes, and when to write it.

One file per run, ``<run_dir>/checkpoint/tasks.ckpt``::

    file   := MAGIC VERSION record*
    record := length:u32  header_crc:u32  payload_crc:u32  payload
    payload:= key_length:u8  key (hex sha256, ascii)  value (parsl_lite.serialize blob)

All integers are big-endian. ``header_crc`` is the CRC-32 of the four
``length`` bytes, ``payload_crc`` that of the payload, so a reader can tell a
record cut short by a crash from one that was damaged afterwards.

Reading policy (:func:`read_checkpoint`):

* A **torn tail** is what a crash while appending leaves: a record (or the
  header) that runs past the end of the file, a last record whose payload fails
  its CRC, or a tail of zero bytes (what some file systems show after a power
  loss). The good records before it are kept and a WARNING names the file,
  the offset and how many bytes were dropped. Only a re-run of those tasks is lost.
* Anything else is :class:`~parsl_lite.dataflow.errors.BadCheckpoint`, naming
  the file and the reason: a file that does not start with our magic bytes (not
  a checkpoint, or another tool's), a format version we do not know, or a
  damaged record with more data after it (damage, not a crash).

Writing (:class:`CheckpointWriter`) hands each record to the OS at once
(unbuffered, one ``pwrite``), so a crash of the process loses nothing written.
``fsync`` runs once per batch (:meth:`CheckpointWriter.sync`) and at close,
not per record: a per-record fsync costs milliseconds on real disks, which
would cap ``task_exit`` checkpointing at a few hundred tasks a second, and all
a power loss can cost is a torn tail, i.e. re-running the last few tasks.
"""
from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

from parsl_lite.dataflow.errors import BadCheckpoint
from parsl_lite.errors import SerializationError
from parsl_lite.serialize import serialize

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "tasks.ckpt"
MAGIC = b"\x89PLCKPT\n"  # high bit and newline catch text-mode and 7-bit mangling, as PNG's does
VERSION = 1
_HEADER = MAGIC + bytes([VERSION])
_RECORD_HEAD = struct.Struct(">III")
_MAX_PAYLOAD = 2**32 - 1
_KEY_LENGTH = 64  # hex sha256
_HEX_KEY = re.compile(rb"[0-9a-f]{64}")


@dataclass
class ScanResult:
    """What :func:`scan` found.

    Attributes:
        records: key -> value blob; later records win.
        good_end: offset after the last good record (where appending resumes).
        torn: why the tail was dropped, or None.
    """

    records: dict[str, bytes] = field(default_factory=dict)
    good_end: int = 0
    torn: Optional[str] = None


def encode_record(key: str, blob: bytes) -> bytes:
    """Return one record, ready to append.

    Raises:
        ValueError: ``key`` is not a 64-character hex digest, or the payload
            exceeds 4 GiB.
    """
    raw_key = key.encode("ascii")
    if len(raw_key) != _KEY_LENGTH:
        raise ValueError(f"checkpoint key must be a {_KEY_LENGTH}-character hex digest, got {key!r}")
    payload = bytes([len(raw_key)]) + raw_key + blob
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"result of {len(blob)} bytes is too large for a checkpoint record")
    length = struct.pack(">I", len(payload))
    return _RECORD_HEAD.pack(len(payload), zlib.crc32(length), zlib.crc32(payload)) + payload


def scan(data: bytes, name: str) -> ScanResult:
    """Parse a whole checkpoint file (pure: bytes in, records out).

    Args:
        data: the file's bytes.
        name: the file's path, for messages.

    Raises:
        BadCheckpoint: the bytes are not a checkpoint, or are damaged before their end.
    """
    result = ScanResult()
    if len(data) < len(_HEADER):
        if _HEADER.startswith(data):  # empty, or a crash while writing the header
            result.torn = f"file is {len(data)} bytes, shorter than the header" if data else "file is empty"
            return result
        raise BadCheckpoint(f"{name}: not a parsl_lite checkpoint file (bad magic bytes)")
    if not data.startswith(MAGIC):
        hint = "; it looks like a pickle, e.g. a Parsl tasks.pkl" if data[:1] == b"\x80" else ""
        raise BadCheckpoint(f"{name}: not a parsl_lite checkpoint file (bad magic bytes{hint})")
    if data[len(MAGIC)] != VERSION:
        raise BadCheckpoint(f"{name}: checkpoint format version {data[len(MAGIC)]}, this parsl_lite reads {VERSION}")
    offset = result.good_end = len(_HEADER)
    view = memoryview(data)
    end = len(data)
    while offset < end:
        torn = _read_record(view, offset, name, result)
        if torn is not None:
            result.torn = torn
            break
        offset = result.good_end
    return result


def _read_record(data: memoryview, offset: int, name: str, result: ScanResult) -> Optional[str]:
    """Read the record at ``offset`` into ``result``; return why the tail is torn, or None."""
    end = len(data)
    if end - offset < _RECORD_HEAD.size:
        if _all_zero(data, offset):
            return f"{end - offset} zero bytes at the end"
        return f"record header cut short at offset {offset}"
    length, header_crc, payload_crc = _RECORD_HEAD.unpack_from(data, offset)
    if zlib.crc32(data[offset:offset + 4]) != header_crc:
        if _all_zero(data, offset):
            return f"{end - offset} zero bytes at the end"
        raise BadCheckpoint(f"{name}: damaged record header at offset {offset}")
    start = offset + _RECORD_HEAD.size
    stop = start + length
    if stop > end:
        return f"record at offset {offset} needs {length} bytes, only {end - start} remain"
    if zlib.crc32(data[start:stop]) != payload_crc:
        if stop == end:
            return f"last record at offset {offset} fails its checksum"
        raise BadCheckpoint(f"{name}: damaged record at offset {offset} (checksum mismatch)")
    key_stop = start + 1 + _KEY_LENGTH
    if length < 1 + _KEY_LENGTH or data[start] != _KEY_LENGTH or not _HEX_KEY.fullmatch(data[start + 1:key_stop]):
        raise BadCheckpoint(f"{name}: record at offset {offset} has a malformed key")
    result.records[bytes(data[start + 1:key_stop]).decode("ascii")] = bytes(data[key_stop:stop])
    result.good_end = stop
    return None


def _all_zero(data: memoryview, offset: int) -> bool:
    return not any(data[offset:])


def read_checkpoint(path: str) -> dict[str, bytes]:
    """Load one checkpoint; return ``key -> value blob``. A torn tail is dropped with a WARNING.

    Args:
        path: a checkpoint directory (as :func:`parsl_lite.utils.get_all_checkpoints`
            returns) or a checkpoint file.

    Raises:
        BadCheckpoint: naming the file and the reason.
    """
    if not os.path.exists(path):
        raise BadCheckpoint(f"{path}: checkpoint not found (expected a checkpoint directory or file)")
    filename = os.path.join(path, CHECKPOINT_FILE) if os.path.isdir(path) else path
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        parsl = os.path.exists(os.path.join(path, "tasks.pkl"))
        raise BadCheckpoint(f"{filename}: checkpoint file not found" +
                            (" (tasks.pkl there is a Parsl checkpoint, which parsl_lite cannot read)" if parsl else "")
                            ) from None
    except OSError as exc:
        raise BadCheckpoint(f"{filename}: cannot read checkpoint: {exc}") from exc
    result = scan(data, filename)
    if result.torn is not None:
        logger.warning("checkpoint %s: torn tail dropped (%s); kept %d records, ignored %d bytes",
                       filename, result.torn, len(result.records), len(data) - result.good_end)
    logger.info("loaded %d results from checkpoint %s", len(result.records), filename)
    return result.records


class CheckpointWriter:
    """Appends records to one checkpoint file. Not thread-safe: the caller holds a lock.

    The file and its directory are created on :meth:`open`. If the file
    already exists (a re-used run directory) it is validated, and a torn tail
    is cut off so new records never follow a broken one.

    The file is unbuffered: each record goes to the OS in one ``write`` call
    (looped if the OS takes less). After a failed write the file is cut back
    to its last good record; if even that fails the writer turns broken and
    refuses further records, so the file on disk stays readable.

    Args:
        path: the checkpoint file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[io.FileIO] = None
        self._good_end = 0
        self.broken: Optional[str] = None

    def open(self) -> None:
        """Create (or validate and reopen) the file. Idempotent.

        Raises:
            BadCheckpoint: an existing file is not a checkpoint or is damaged.
            OSError: the directory or file cannot be created.
        """
        if self._file is not None:
            return
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        created = not os.path.exists(self.path)
        f = io.FileIO(self.path, "w+" if created else "r+")
        try:
            good_end = 0
            if not created:
                result = scan(f.readall(), self.path)
                good_end = result.good_end
                if result.torn is not None:
                    logger.warning("checkpoint %s: cutting torn tail (%s) before appending", self.path, result.torn)
            if good_end == 0:
                good_end = len(_HEADER)
                f.truncate(0)
                _write_all(f, 0, _HEADER)
            f.truncate(good_end)
        except BaseException:
            f.close()
            raise
        self._file, self._good_end = f, good_end
        if created:
            _fsync_dir(directory)

    def append(self, key: str, blob: bytes) -> bool:
        """Append one record (handed to the OS, not fsynced); False if the writer is broken.

        Raises:
            ValueError: see :func:`encode_record`.
            OSError: the write failed (the file was cut back to its last good record).
        """
        self.open()
        if self.broken is not None:
            return False
        record = encode_record(key, blob)
        f = self._file
        assert f is not None
        try:
            _write_all(f, self._good_end, record)
        except OSError:
            self._rewind()
            raise
        self._good_end += len(record)
        return True

    def sync(self) -> None:
        """fsync: what was appended survives a power loss."""
        if self._file is not None and self.broken is None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Sync and close. Idempotent."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            if self.broken is None:
                os.fsync(f.fileno())
        finally:
            f.close()

    def _rewind(self) -> None:
        f = self._file
        assert f is not None
        try:
            f.truncate(self._good_end)
        except OSError as exc:
            self.broken = f"cannot cut {self.path} back after a failed write: {exc}"
            logger.error("checkpoint %s: %s; no more results will be checkpointed this run", self.path, self.broken)


def _write_all(f: io.FileIO, offset: int, data: bytes) -> None:
    """Write all of ``data`` at ``offset`` (positioned writes: no shared file offset to keep right)."""
    view = memoryview(data)
    fd = f.fileno()
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"write to {f.name} made no progress")
        view, offset = view[written:], offset + written


def _fsync_dir(directory: str) -> None:
    """Make a new file's directory entry durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class Checkpointer:
    """Decides when this run's results are written, per ``checkpoint_mode``.

    ``task_exit`` writes each result as it arrives (one record, no fsync);
    ``periodic``, ``dfk_exit`` and ``manual`` queue results until
    :meth:`flush` (from the timer thread, :meth:`close`, or
    ``dfk.checkpoint()``). Results are serialized outside the lock; a result
    that cannot be serialized is logged and skipped (it stays memoized in
    memory). Each key is written at most once per run.

    Args:
        mode: ``task_exit``, ``periodic``, ``dfk_exit`` or ``manual``.
        directory: this run's checkpoint directory (``<run_dir>/checkpoint``).
        period_s: seconds between flushes in ``periodic`` mode.

    Raises:
        BadCheckpoint: the run directory already holds a damaged checkpoint file.
    """

    def __init__(self, mode: str, directory: str, period_s: Optional[float] = None) -> None:
        self.mode = mode
        self.directory = directory
        self.written = 0
        self._writer = CheckpointWriter(os.path.join(directory, CHECKPOINT_FILE))
        self._lock = threading.Lock()  # guards the writer, _pending and _keys
        self._pending: list[tuple[Any, str, Any]] = []
        self._keys: set[str] = set()
        self._closed = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if os.path.exists(self._writer.path):  # a re-used run directory: validate now, not mid-run
            self._writer.open()
        if mode == "periodic":
            if not period_s:
                raise ValueError("periodic checkpointing needs a period")
            self._thread = threading.Thread(target=self._run_periodic, args=(period_s,),
                                            name="parsl_lite-checkpoint", daemon=True)
            self._thread.start()

    def add(self, task_id: Any, key: str, result: Any) -> None:
        """Take a finished task's result: write it now (``task_exit``) or queue it."""
        if key in self._keys:  # unlocked peek; _write checks again under the lock
            return
        if self.mode != "task_exit":
            with self._lock:
                self._pending.append((task_id, key, result))
            return
        try:
            self._write([(task_id, key, result)], sync=False)
        except Exception:  # the task itself succeeded; only its checkpoint is lost
            logger.exception("task %s: result not checkpointed to %s", task_id, self.directory)

    def flush(self) -> int:
        """Write and fsync everything queued; return how many records were written.

        Raises:
            OSError: the write failed; what was not written stays queued.
        """
        with self._lock:
            batch, self._pending = self._pending, []
        try:
            count = self._write(batch, sync=True)
        except BaseException:
            with self._lock:
                self._pending[:0] = [item for item in batch if item[1] not in self._keys]
            raise
        if count:
            logger.info("checkpointed %d results to %s", count, self.directory)
        return count

    def close(self) -> None:
        """Stop the timer, write what the mode asks for at exit, close the file. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if self.mode in ("periodic", "dfk_exit"):
                self.flush()
            elif self._pending:
                logger.warning("%d results not checkpointed: checkpoint_mode='manual' writes only when "
                               "dfk.checkpoint() is called", len(self._pending))
        except Exception:
            logger.exception("final checkpoint to %s failed", self.directory)
        finally:
            with self._lock:
                self._closed = True  # a task finishing during cleanup must not reopen the file
                self._writer.close()

    def _write(self, batch: list[tuple[Any, str, Any]], *, sync: bool) -> int:
        blobs: list[tuple[Any, str, bytes]] = []
        for task_id, key, result in batch:
            try:
                blobs.append((task_id, key, serialize(result, f"result of task {task_id}")))
            except SerializationError as exc:
                logger.warning("task %s: result not checkpointed: %s", task_id, exc)
        count = 0
        with self._lock:
            if self._closed:
                return 0
            self._writer.open()
            for task_id, key, blob in blobs:
                if key in self._keys:
                    continue
                try:
                    if not self._writer.append(key, blob):
                        break  # the writer is broken; it logged why
                except ValueError as exc:  # too large for a record
                    logger.warning("task %s: result not checkpointed: %s", task_id, exc)
                    continue
                self._keys.add(key)
                count += 1
            if sync:
                self._writer.sync()
            self.written += count
        return count

    def _run_periodic(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            try:
                self.flush()
            except Exception:
                logger.exception("periodic checkpoint to %s failed; will try again", self.directory)
