"""The lake's lease: a crashed holder expires, a live one keeps it, a lost one writes nothing more."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from pipeline_helpers import fake_predictions, truth_predictions, wanted_writes

import triage.tasks.push_send
from triage.lake import Lake
from triage.lake import lease as lease_module
from triage.lake.lease import LakeBusyError, LakeLease, LeaseLostError, hold
from triage.simulator.verdict import judge
from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.push import push

HOLDER = textwrap.dedent(
    """
    import sys, time
    from triage.lake import Lake
    from triage.lake.lease import hold

    with hold(Lake(sys.argv[1]), run_id="crashed-run", flow="triage", ttl=float(sys.argv[2]), wait=0):
        print("held", flush=True)
        time.sleep(120)
    """
)


@contextmanager
def holder_process(lake: Path, ttl: float) -> Iterator[subprocess.Popen]:
    """A run in another process holding the lake's lease until the test SIGKILLs it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lake), str(ttl)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_live_holder_keeps_the_lease_and_a_sigkilled_one_loses_it_after_the_ttl(tmp_path, monkeypatch):
    monkeypatch.setattr(
        lease_module, "_pid_space", lambda: "another machine"
    )  # the holder's PID is not ours to see
    lake = Lake(tmp_path / "lake")
    with holder_process(tmp_path / "lake", ttl=1.5):
        time.sleep(2.5)  # longer than the TTL: only the heartbeat keeps the lease
        with pytest.raises(LakeBusyError) as busy:
            LakeLease.acquire(lake, run_id="next-run", flow="triage", ttl=60, wait=0.5)
        message = str(busy.value)
        assert "\n" not in message and "crashed-run" in message and "pipeline.lease_wait_seconds" in message
    killed = time.monotonic()
    taken = LakeLease.acquire(lake, run_id="next-run", flow="triage", ttl=60, wait=10)
    assert 0.9 < time.monotonic() - killed < 3.0  # the TTL after the last heartbeat, not at once, not forever
    assert taken.record.generation == 2 and taken.record.run_id == "next-run"
    taken.check()


def test_a_sigkilled_holder_on_this_machine_is_followed_at_once(tmp_path):
    lake = Lake(tmp_path / "lake")
    with holder_process(tmp_path / "lake", ttl=60), pytest.raises(LakeBusyError, match="crashed-run"):
        LakeLease.acquire(lake, run_id="next-run", flow="triage", ttl=60, wait=0)
    killed = time.monotonic()
    taken = LakeLease.acquire(lake, run_id="next-run", flow="triage", ttl=60, wait=10)
    assert time.monotonic() - killed < 1.0 and taken.record.generation == 2


def test_a_finished_run_releases_the_lease_at_once(tmp_path):
    lake = Lake(tmp_path / "lake")
    with (
        hold(lake, run_id="first", flow="triage", ttl=60, wait=0),
        pytest.raises(LakeBusyError, match="first"),
    ):
        LakeLease.acquire(lake, run_id="second", flow="backfill", ttl=60, wait=0)
    started = time.monotonic()
    with hold(lake, run_id="second", flow="backfill", ttl=60, wait=0) as lease:
        assert lease.record.generation == 2
    assert time.monotonic() - started < 1.0


def test_object_storage_takes_the_lease_by_writing_then_reading_back(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "SETTLE_SECONDS", 0.01)
    (tmp_path / "bucket").mkdir()
    store = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())  # not a local fs
    lake = Lake("lake", filesystem=store)
    with hold(lake, run_id="first", flow="triage", ttl=60, wait=0) as first:
        with pytest.raises(LakeBusyError, match="first"):
            LakeLease.acquire(Lake("lake", filesystem=store), run_id="second", flow="triage", ttl=60, wait=0)
        first.check()
    second = LakeLease.acquire(lake, run_id="second", flow="triage", ttl=60, wait=0)
    assert second.record.generation == 2
    with pytest.raises(LeaseLostError, match="second"):
        first.check()


class _FirstLeaseReadCutShort(pafs.FSSpecHandler):
    """Object storage read while the holder renews: the first read of a lease record is cut short
    (pyarrow reads a HEAD, then a ranged GET of the replaced object)."""

    def __init__(self) -> None:
        import fsspec

        super().__init__(fsspec.filesystem("file"))
        self.cut = 0

    def open_input_stream(self, path):
        stream = super().open_input_stream(path)
        if "_lease" not in path or self.cut:
            return stream
        self.cut += 1
        data = stream.read()
        return pa.PythonFile(io.BytesIO(data[: len(data) // 2]), mode="r")


def test_a_lease_record_read_cut_short_is_read_again_not_taken_for_expired(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "SETTLE_SECONDS", 0.01)
    holder_fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    handler = _FirstLeaseReadCutShort()
    reader_fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.PyFileSystem(handler))
    second = Lake("lake", filesystem=reader_fs)
    with (
        hold(Lake("lake", filesystem=holder_fs), run_id="first", flow="triage", ttl=60, wait=0),
        pytest.raises(LakeBusyError, match="first"),
    ):
        LakeLease.acquire(second, run_id="second", flow="triage", ttl=60, wait=0)
    assert handler.cut == 1


@pytest.mark.asyncio
async def test_a_run_that_lost_its_lease_stops_before_its_next_write_batch(
    make_ctx, adapter_for, sim, monkeypatch
):
    monkeypatch.setattr(triage.tasks.push_send, "SINGLE_BATCH", 5)
    ctx = make_ctx().model_copy(update={"overrides": {"pipeline": {"bulk_update": False}}})
    lake = ctx.lake()
    renew = LakeLease.renew
    async with adapter_for(ctx) as adapter:
        extracted, decided = await decided_confidently(ctx, adapter, sim)
        wanted = wanted_writes(ctx, decided, await adapter.get_fields())
        real, taken = adapter.update_ticket, []

        async def frozen_after_the_first_batch(*args, **kwargs):
            ticket = await real(*args, **kwargs)
            if len(puts(sim)) == 5 and not taken:  # the heartbeat stalls past the TTL; another run takes over
                monkeypatch.setattr(LakeLease, "renew", lambda self: None)
                await asyncio.sleep(0.8)
                taken.append(LakeLease.acquire(lake, run_id="run-2", flow="triage", ttl=60, wait=0))
            return ticket

        adapter.update_ticket = frozen_after_the_first_batch
        with (
            hold(lake, run_id=ctx.run_id, flow="triage", ttl=0.5, wait=0),
            pytest.raises(LeaseLostError, match="run-2"),
        ):
            await push(ctx, decided, extracted, adapter)
    assert len(puts(sim)) == 5  # the first batch went out; nothing after the lease was lost
    monkeypatch.setattr(LakeLease, "renew", renew)

    # The new holder's run sends the rest, and nothing twice.
    taken[0].release()
    again = make_ctx("run-2")
    async with adapter_for(again) as adapter:
        extracted2, decided2 = await decided_confidently(again, adapter, sim)
        with hold(lake, run_id=again.run_id, flow="triage", ttl=60, wait=0):
            await push(again, decided2, extracted2, adapter)
    assert len(wanted) > 5 and judge(sim, wanted) == {"lost": [], "doubled": [], "overwritten": []}


async def decided_confidently(ctx, adapter, sim):
    """Extract, the true labels predicted at 0.95, decide."""
    extracted = await extract(ctx, adapter)
    predicted = fake_predictions(ctx, extracted, truth_predictions(sim, lambda ticket_id: True))
    return extracted, decide(ctx, extracted, predicted, await adapter.get_fields())


def puts(sim) -> list:
    return [w for w in sim.writes if w.method == "PUT"]
