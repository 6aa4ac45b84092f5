"""The adapter over real HTTP against the Freshdesk simulator (rate windows shrunk to seconds)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from triage.adapters.errors import GoneError, TicketSystemError, TicketSystemValidationError
from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig
from triage.simulator import SimulatorConfig, run_simulator

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNLIMITED = {"plan": "custom", "rate_limit_total": 10**6, "rate_limit_tickets_list": 10**6}


def connect(sim, **options) -> FreshdeskAdapter:
    options = {**UNLIMITED, **options} if "plan" not in options else options
    config = FreshdeskConfig(base_url=sim.base_url, freshdesk_api_key=sim.api_key, **options)
    return FreshdeskAdapter(config)


async def read_ids(adapter: FreshdeskAdapter) -> list[int]:
    return [ticket.id async for ticket in adapter.iter_updated_tickets(EPOCH)]


@pytest.mark.parametrize("offset", [-900, 900])
async def test_the_clock_offset_is_freshdesks_clock_less_ours_never_more(offset):
    """From the ``Date`` of its answers: a clock 15 minutes behind or ahead, to within a second and the
    latency, and never overstated (moments moved by it must not pass Freshdesk's stamps)."""
    config = SimulatorConfig(tickets=50, open_tickets=5, seed=4, clock_offset_seconds=offset)
    with run_simulator(config) as sim:
        async with connect(sim) as adapter:
            assert adapter.clock_offset().total_seconds() == 0  # nothing answered yet
            await adapter.get_fields()
            measured = adapter.clock_offset().total_seconds()
    assert offset - 2 < measured <= offset


async def test_35000_tickets_read_past_the_300_page_cap_none_lost_none_twice():
    with run_simulator(SimulatorConfig(tickets=35_000, open_tickets=500, seed=3)) as sim:
        listable = {tid for tid in sim.ticket_ids() if not _hidden(sim.ticket(tid))}
        async with connect(sim) as adapter:
            ids = await read_ids(adapter)
        list_calls = sim.stats()["by_route"]["GET /tickets"]

    assert len(listable) > 34_000
    assert len(ids) == len(set(ids)), "a ticket was yielded twice"
    assert set(ids) == listable, "tickets were lost"
    # each page starts at the previous page's last second, so it repeats that second's rows (1-2)
    assert list_calls <= len(listable) // 98 + 2


async def test_pacing_at_growth_limits_avoids_429s():
    """Growth limits in a 1-second window: 20 list calls (3 credits each) per window, no 429."""
    config = SimulatorConfig(tickets=4_000, open_tickets=10, plan="growth", window_seconds=1.0)
    with run_simulator(config) as sim:
        async with connect(sim, plan="growth", rate_window_seconds=1.0) as adapter:
            started = time.monotonic()
            ids = await read_ids(adapter)
            elapsed = time.monotonic() - started
        stats = sim.stats()
    assert len(ids) > 3_900
    assert stats["by_status"].get("429", 0) == 0
    assert elapsed >= 1.0  # 40 list calls cannot fit in one window of 20


async def test_concurrent_reads_share_one_budget_without_429s():
    config = SimulatorConfig(tickets=1_500, open_tickets=10, plan="growth", window_seconds=1.0)
    with run_simulator(config) as sim:
        async with connect(sim, plan="growth", rate_window_seconds=1.0) as adapter:
            reads = await asyncio.gather(*(read_ids(adapter) for _ in range(3)))
        stats = sim.stats()
    assert stats["by_route"]["GET /tickets"] > 40  # three readers, well past one window's 20 calls
    assert stats["by_status"].get("429", 0) == 0
    assert reads[0] == reads[1] == reads[2]


async def test_a_429_storm_is_survived_by_waiting():
    with run_simulator(SimulatorConfig(tickets=600, open_tickets=10)) as sim:
        sim.faults.inject("storm", next=3, retry_after=1, path="/tickets")
        async with connect(sim) as adapter:
            started = time.monotonic()
            ids = await read_ids(adapter)
            elapsed = time.monotonic() - started
        stats = sim.stats()
    assert len(ids) > 550
    assert stats["by_status"]["429"] == 3
    assert elapsed >= 2.9  # it waited Retry-After each time instead of hammering


async def test_validation_error_names_its_field_and_enforce_mandatory_false_passes():
    config = SimulatorConfig(tickets=300, open_tickets=20, required_for_agents=("cf_order_number",))
    with run_simulator(config) as sim:
        ticket_id = next(iter(sim.truth()))
        async with connect(sim) as adapter:
            with pytest.raises(TicketSystemValidationError) as info:
                await adapter.update_ticket(ticket_id, {"priority": "High"})
        rejected = sim.writes[-1]
        async with connect(sim, **UNLIMITED, enforce_mandatory=False) as lenient:
            updated = await lenient.update_ticket(ticket_id, {"priority": "High"})
        accepted = sim.writes[-1]
    error = info.value
    assert error.fields == ["custom_fields.cf_order_number"]
    assert error.errors[0].code == "missing_field"
    assert error.status_code == 400 and error.request_id == rejected.request_id
    assert updated.priority == 3
    assert "enforce_mandatory=false" in accepted.query and accepted.body == {"priority": 3}


async def test_update_on_a_deleted_ticket_is_gone():
    with run_simulator(SimulatorConfig(tickets=200, open_tickets=10)) as sim:
        ticket_id = next(iter(sim.truth()))
        sim.agent_edit(ticket_id, deleted=True)
        async with connect(sim) as adapter:
            with pytest.raises(GoneError) as info:
                await adapter.update_ticket(ticket_id, {"priority": "High"})
            flagged = await adapter.get_ticket(ticket_id)
        write = sim.writes[-1]
    assert info.value.status_code == 405 and info.value.request_id == write.request_id
    assert flagged.deleted


async def test_labels_are_written_as_native_values_and_tags_merged():
    with run_simulator(SimulatorConfig(tickets=200, open_tickets=10)) as sim:
        ticket_id = next(iter(sim.truth()))
        sim.agent_edit(ticket_id, tags=["vip"])
        async with connect(sim) as adapter:
            group_id = (await adapter.get_fields())["group"].to_native("Billing")
            ticket = await adapter.update_ticket(
                ticket_id,
                {"group": "billing", "priority": "High", "type": "incident", "cf_product": "api",
                 "tags": ["ai-triaged"]},
            )  # fmt: skip
            info = adapter.last_response
        write = sim.writes[-1]
        stored = sim.ticket(ticket_id)
    assert write.body == {
        "group_id": group_id,
        "priority": 3,
        "type": "Incident",
        "tags": ["vip", "ai-triaged"],
        "custom_fields": {"cf_product": "API"},
    }
    assert ticket.group_id == group_id and ticket.tags == ("vip", "ai-triaged")
    assert stored["tags"] == ["vip", "ai-triaged"] and stored["custom_fields"]["cf_product"] == "API"
    assert info.request_id == write.request_id and info.status_code == 200


async def test_bulk_update_appends_tags_and_reports_each_ticket():
    config = SimulatorConfig(tickets=400, open_tickets=150, bulk_delay_seconds=0.1)
    with run_simulator(config) as sim:
        ids = sorted(sim.truth())
        sim.agent_edit(ids[0], tags=["vip"])
        sim.agent_edit(ids[1], deleted=True)
        async with connect(sim, **UNLIMITED, bulk_poll_interval_seconds=0.1) as adapter:
            result = await adapter.bulk_update(ids, {"priority": "Medium", "tags": ["ai-triaged"]})
        first = sim.ticket(ids[0])
    assert len(result.job_id.split(",")) == 2  # 150 ids: two jobs of <= 100
    assert set(result.succeeded) | set(result.failed) == set(ids)
    assert ids[1] in result.failed and ids[0] in result.succeeded
    assert first["priority"] == 2 and first["tags"] == ["vip", "ai-triaged"]


async def test_search_maps_labels_and_refuses_silent_truncation():
    with run_simulator(SimulatorConfig(tickets=2_000, open_tickets=10)) as sim:
        async with connect(sim) as adapter:
            refunds = await adapter.find_tickets({"type": "refund", "status": [4, 5]}, max_results=40)
            with pytest.raises(TicketSystemError, match="at most 300"):
                await adapter.find_tickets({"status": [4, 5]})
    assert 0 < len(refunds) <= 40
    assert all(t.type == "Refund" and t.status in (4, 5) for t in refunds)


async def test_the_api_key_is_absent_from_every_log_line_and_error(caplog):
    config = SimulatorConfig(tickets=300, open_tickets=20, api_key="simkey-0123456789abcdef")
    forms = (config.api_key, base64.b64encode(f"{config.api_key}:X".encode()).decode())
    errors: list[BaseException] = []
    with ExitStack() as stack, run_simulator(config) as sim:
        for name in ("httpx", "httpcore", "triage.adapters", "uvicorn", ""):
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name))  # restored after the test
        ticket_id = next(iter(sim.truth()))
        sim.agent_edit(ticket_id, spam=True)
        sim.faults.inject("error", next=1, status=503, path="/ticket_fields")
        sim.faults.inject("drop", next=1, path="/groups")
        sim.faults.inject("malformed", next=1, method="GET", path="/tickets/")
        async with connect(sim, **UNLIMITED, backoff_base_seconds=0.01) as adapter:
            await read_ids(adapter)
            await adapter.get_fields()
            for call in (
                adapter.update_ticket(ticket_id, {"priority": "High"}),
                adapter.update_ticket(ticket_id, {"status": 99}),
                adapter.get_ticket(10**9),
            ):
                try:
                    await call
                except TicketSystemError as exc:
                    errors.append(exc)
        async with FreshdeskAdapter(
            FreshdeskConfig(base_url=sim.base_url, freshdesk_api_key="wrong-key-123456", **UNLIMITED)
        ) as stranger:
            try:
                await stranger.get_ticket(1)
            except TicketSystemError as exc:
                errors.append(exc)
        unfired = sim.faults.rules()
    assert unfired == []  # every injected fault (503, dropped connection, cut-off JSON) was met
    assert len(errors) == 4
    messages = [record.getMessage() for record in caplog.records]
    assert any("httpcore" in record.name for record in caplog.records)
    for text in messages + [_everything_about(exc) for exc in errors]:
        assert not any(form in text for form in forms), text


def _hidden(ticket: dict) -> bool:
    return bool(ticket.get("spam") or ticket.get("deleted"))


def _everything_about(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), repr(vars(exc)), *traceback.format_exception(exc)])


def test_one_adapter_serves_successive_and_concurrent_event_loops():
    """Prefect tasks may each run their own loop, in threads: connections are pooled per loop."""
    with run_simulator(SimulatorConfig(tickets=100, open_tickets=5)) as sim:
        adapter = connect(sim)
        ticket_id = next(iter(sim.truth()))
        first = asyncio.run(adapter.get_ticket(ticket_id))
        second = asyncio.run(adapter.get_ticket(ticket_id))  # a pool tied to the closed loop would fail
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda _: asyncio.run(adapter.get_ticket(ticket_id)), range(6)))
        asyncio.run(adapter.aclose())
    assert first.id == second.id == ticket_id
    assert [t.id for t in results] == [ticket_id] * 6
