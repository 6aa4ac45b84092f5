"""The lake's lease: one writing run at a time, a crashed holder expiring, a lost holder fenced off.

A lease is a numbered record under ``<lake>/_lease/`` (``000000000007.json``); the highest number is
the current one. Taking the lease creates the next number, which only one run can do:

- on a local folder (or a network mount) the record is written to a temporary file and linked to its
  final name, which fails when the name exists (``os.link``: atomic create);
- on object storage (``s3://``) pyarrow offers no conditional write, so the record is written when
  its name is free, read back after ``SETTLE_SECONDS`` and kept only if it is still ours. Two runs
  racing within that moment could both see their own record; strongly consistent stores (S3 since
  2020) make the read-back reliable, eventually consistent ones do not.

A holder renews its record from a heartbeat thread every third of the TTL; a holder that stops (a
SIGKILL, a lost machine) leaves a record that expires after the TTL, and the next run takes the next
number. On the holder's own machine (same boot and PID namespace) a holder whose process is gone is
known dead at once. A holder whose record expired and was replaced has lost the lease: :func:`check_fence`
raises before its next write batch (the number is the fencing token). Expiry compares wall clocks,
so the TTL must exceed the clock skew between the machines that share a lake.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

from triage.errors import TriageError
from triage.lake.io import Lake

log = logging.getLogger(__name__)

#: Object storage only: how long a new record is left before it is read back to see who won.
SETTLE_SECONDS = 1.0
#: How often a waiting run looks at the lease again.
POLL_SECONDS = 0.5
#: Reads of a record before it counts as unreadable (a read cut short by a renewal is retried).
READ_ATTEMPTS = 4


class LeaseError(TriageError, RuntimeError):
    """The run may not write to the lake (one-line message for people)."""


class LakeBusyError(LeaseError):
    """Another run holds the lake's lease and kept it for as long as this run would wait."""


class LeaseLostError(LeaseError):
    """This run's lease expired and another run took it: it must not write any more."""


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease file holds."""

    generation: int
    holder: str
    run_id: str
    flow: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    released: bool = False
    #: The holder's boot and PID namespace (see :func:`_pid_space`), when known.
    pid_space: str | None = None

    def free(self, now: float) -> bool:
        return self.released or self.expires_at <= now or self.holder_gone()

    def holder_gone(self) -> bool:
        """Whether the holder ran where this process can see its PID, and no longer runs."""
        if self.pid_space is None or self.pid_space != _pid_space():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def describe(self) -> str:
        return f"run {self.run_id} ({self.flow}, host {self.host}, pid {self.pid}) since {_clock(self.acquired_at)}"


class LakeLease:
    """A lease this process holds on a lake (see :func:`hold`)."""

    def __init__(self, lake: Lake, record: LeaseRecord, ttl: float) -> None:
        self.lake, self.record, self.ttl = lake, record, ttl
        self._lock = threading.Lock()

    @classmethod
    def acquire(cls, lake: Lake, *, run_id: str, flow: str, ttl: float, wait: float) -> LakeLease:
        """Take the lake's lease, waiting up to ``wait`` seconds for its holder to finish or expire."""
        deadline = time.monotonic() + wait
        holder = uuid.uuid4().hex
        while True:
            current = _newest(lake)
            now = time.time()
            if current is None or current.free(now):
                record = LeaseRecord(
                    generation=(current.generation + 1) if current else 1,
                    holder=holder,
                    run_id=run_id,
                    flow=flow,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    pid_space=_pid_space(),
                    acquired_at=now,
                    expires_at=now + ttl,
                )
                if _create(lake, record):
                    _forget_older(lake, record.generation)
                    return cls(lake, record, ttl)
                continue  # another run took this number first: look again
            if time.monotonic() >= deadline:
                raise LakeBusyError(
                    f"the lake {lake.uri} is in use by {current.describe()}; waited {wait:g} s "
                    f"(pipeline.lease_wait_seconds): run again when it has finished (a crashed run's "
                    f"lease expires at {_clock(current.expires_at)}, pipeline.lease_seconds)"
                )
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless this lease is still the lake's current one and unexpired."""
        current = _newest(self.lake)
        now = time.time()
        if current is None or current.holder != self.record.holder:
            taker = f"to {current.describe()}" if current else "(its record is gone)"
            raise LeaseLostError(
                f"run {self.record.run_id} lost its lease on the lake {self.lake.uri} {taker}: its "
                f"heartbeat stopped for longer than pipeline.lease_seconds; it stops before writing more"
            )
        if current.expires_at <= now:
            raise LeaseLostError(
                f"run {self.record.run_id}'s lease on the lake {self.lake.uri} expired at "
                f"{_clock(current.expires_at)} (no heartbeat for pipeline.lease_seconds); it stops "
                f"before writing more"
            )

    def renew(self) -> None:
        """Push the expiry one TTL ahead (raises :class:`LeaseLostError` when the lease is lost)."""
        with self._lock:
            self.check()
            self.record = replace(self.record, expires_at=time.time() + self.ttl)
            _put(self.lake, self.record)

    def release(self) -> None:
        """Mark the lease free (when it is still ours), so the next run need not wait for the TTL."""
        with self._lock, contextlib.suppress(LeaseError, OSError):
            self.check()
            self.record = replace(self.record, released=True)
            _put(self.lake, self.record)


#: Leases held by this process, by (lake root, run id): what :func:`check_fence` checks.
_HELD: dict[tuple[str, str], LakeLease] = {}


@contextlib.contextmanager
def hold(lake: Lake, *, run_id: str, flow: str, ttl: float, wait: float) -> Iterator[LakeLease]:
    """Hold the lake's lease for the block, renewed by a heartbeat thread; released at the end."""
    lease = LakeLease.acquire(lake, run_id=run_id, flow=flow, ttl=ttl, wait=wait)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lease, stop), name=f"lease-{run_id}", daemon=True)
    key = (lake.root, run_id)
    _HELD[key] = lease
    beat.start()
    try:
        yield lease
    finally:
        stop.set()
        beat.join()
        _HELD.pop(key, None)
        lease.release()


def check_fence(lake: Lake, run_id: str) -> None:
    """Before a write batch: raise :class:`LeaseLostError` when ``run_id``'s lease on ``lake`` is lost.

    A run that holds no lease in this process (a stage called on its own, as tests do) is not checked.
    """
    lease = _HELD.get((lake.root, run_id))
    if lease is not None:
        lease.check()


def _heartbeat(lease: LakeLease, stop: threading.Event) -> None:
    while not stop.wait(lease.ttl / 3):
        try:
            lease.renew()
        except LeaseLostError as exc:
            log.error("%s", exc)
            return
        except OSError as exc:  # the lake unreachable for a moment: try again on the next beat
            log.warning("renewing the lake's lease failed: %s", exc)


def _pid_space() -> str | None:
    """This machine's boot id and PID namespace (Linux): two processes that share it see each other's
    PIDs, so a holder's PID that is gone means the holder is dead (a killed run is followed at once)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _folder(lake: Lake) -> str:
    return f"{lake.root}/_lease"


def _path(lake: Lake, generation: int) -> str:
    return f"{_folder(lake)}/{generation:012d}.json"


def _generations(lake: Lake) -> list[int]:
    folder = _folder(lake)
    if lake.fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return []
    infos = lake.fs.get_file_info(pafs.FileSelector(folder))
    names = (i.base_name.removesuffix(".json") for i in infos if i.base_name.endswith(".json"))
    return sorted(int(n) for n in names if n.isdigit())


def _read(lake: Lake, generation: int) -> LeaseRecord | None:
    """The record, or None when there is none.

    Object storage is read with a HEAD (the size) then a ranged GET, so a record read while its holder
    renews it can come back cut short: such a read is tried again (``READ_ATTEMPTS``), never taken for
    an expired lease at once. Only a record that stays unreadable (damaged by hand) counts as expired.
    """
    for attempt in range(READ_ATTEMPTS):
        try:
            with lake.fs.open_input_stream(_path(lake, generation)) as stream:
                return LeaseRecord(**json.loads(stream.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            if attempt < READ_ATTEMPTS - 1:
                time.sleep(POLL_SECONDS / 5)
                continue
            log.warning("ignoring unreadable lease record %s: %s", _path(lake, generation), exc)
    return LeaseRecord(generation, "", "unknown", "unknown", "unknown", 0, 0.0, 0.0)


def _newest(lake: Lake) -> LeaseRecord | None:
    for generation in reversed(_generations(lake)):
        record = _read(lake, generation)
        if record is not None:
            return record
    return None


def _encode(record: LeaseRecord) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


def _put(lake: Lake, record: LeaseRecord) -> None:
    """Replace the record's file whole (a temporary file renamed into place on a local folder)."""
    path = _path(lake, record.generation)
    if isinstance(lake.fs, pafs.LocalFileSystem):
        temp = Path(f"{_folder(lake)}/.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(_encode(record))
        os.replace(temp, path)
    else:
        with lake.fs.open_output_stream(path) as stream:
            stream.write(_encode(record))


def _create(lake: Lake, record: LeaseRecord) -> bool:
    """Create the record's file unless its number is taken; whether this run got it."""
    lake.fs.create_dir(_folder(lake), recursive=True)
    path = _path(lake, record.generation)
    if isinstance(lake.fs, pafs.LocalFileSystem):
        temp = Path(f"{_folder(lake)}/.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(_encode(record))
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
    else:
        if lake.fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        _put(lake, record)
        time.sleep(SETTLE_SECONDS)
        if _read(lake, record.generation) != record:
            return False
    return max(_generations(lake)) == record.generation  # not a number a newer holder made old


def _forget_older(lake: Lake, generation: int) -> None:
    """Delete records older than the previous one (the newest number alone decides)."""
    for old in _generations(lake):
        if old < generation - 1:
            with contextlib.suppress(OSError):
                lake.fs.delete_file(_path(lake, old))


def _clock(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M:%S} UTC"
