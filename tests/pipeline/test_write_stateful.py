"""A stateful test of write safety: agents' edits, new tickets, incremental runs (extract, predict,
decide, push), faults armed on the write paths, crashes mid-push and pushes retried, interleaved at
random against a live simulator. After every step, from the simulator's own change and write logs
(never from the project's audit): no write doubled, no agent's value overwritten; after every
completed push in apply mode, no write lost.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pipeline_helpers import fake_predictions, write_config

import triage.tasks.push_state as push_state
from triage.adapters.errors import TicketSystemError, is_transient
from triage.adapters.registry import build_adapter
from triage.lake import Lake, next_window, record_stage
from triage.lake.runs import utcnow
from triage.settings import load_settings
from triage.simulator import FaultRule, SimulatorConfig, run_simulator
from triage.simulator.verdict import NATIVE, doubled, lost, native_value, overwritten
from triage.tasks.context import StageContext
from triage.tasks.decide import decide
from triage.tasks.extract import extract
from triage.tasks.manifest import DecideManifest, ExtractManifest, PredictManifest
from triage.tasks.push import push

API_KEY = "sim-stateful-write-safety"
SIM_CONFIG = SimulatorConfig(
    api_key=API_KEY, tickets=40, open_tickets=12, seed=23, bulk_delay_seconds=0.0, open_preset_fraction=0.5
)
FIELDS = ("group", "priority", "type")
PUT, BULK, NOTES, JOBS = {"method": "PUT"}, {"path": "/bulk_update"}, {"path": "/notes"}, {"path": "/jobs/"}
#: Faults on every write path, those striking after the helpdesk acted included (answers lost).
FAULTS = [
    FaultRule("error", status=503, next=2, **PUT),
    FaultRule("error", status=504, next=1, after=True, **PUT),
    FaultRule("drop", next=1, after=True, **PUT),
    FaultRule("malformed", next=1, **PUT),
    FaultRule("storm", next=1, retry_after=0, **PUT),
    FaultRule("error", status=502, next=3, **BULK),
    FaultRule("drop", next=1, after=True, **BULK),
    FaultRule("error", status=502, next=1, after=True, **BULK),
    FaultRule("error", status=500, next=2, **JOBS),
    FaultRule("malformed", next=1, **JOBS),
    FaultRule("drop", next=1, after=True, **NOTES),
    FaultRule("error", status=500, next=1, **NOTES),
]
#: Edits an agent makes in the UI: (field, value); group and type values index the account's lists.
EDITS = [
    ("priority", "Low"),
    ("priority", "Medium"),
    ("priority", "Urgent"),
    ("group", 0),
    ("group", 1),
    ("type", 0),
    ("tags", "vip"),
    ("tags", None),  # drops the ticket's tags, ours included
    ("status", 3),
    ("spam", True),
]
AGENTS_BEFORE = st.sampled_from([None, None, "edit", "restore", "restore-default"])
MODES = st.sampled_from(["apply", "apply", "apply", "suggest", "shadow"])


class Crash(BaseException):
    """The process dying: nothing after it runs, not even the audit rows of a ``finally``."""


def choose(sim) -> Callable[[int, str], tuple[str, float] | None]:
    """The true label, at a probability fixed per ticket and field (confident, suggest band, below)."""
    truth = sim.truth()

    def pick(ticket_id: int, field: str) -> tuple[str, float] | None:
        label = truth.get(ticket_id, {}).get(field)
        if label is None:
            return None
        return label, (0.95, 0.95, 0.95, 0.6, 0.3)[(ticket_id + FIELDS.index(field)) % 5]

    return pick


class WriteSafety(RuleBasedStateMachine):
    """One helpdesk and one lake; a run is decided, then pushed (or crashed, or retried)."""

    sim: Any = None  # the running simulator, shared by the examples and reset for each

    def __init__(self) -> None:
        super().__init__()
        self.sim.reset()
        self.tmp = Path(tempfile.mkdtemp(prefix="triage-stateful-"))
        self.config = write_config(self.tmp / "triage.yml", self.sim, self.tmp, bulk_settle_seconds=0)
        self.runs = 0
        #: The run decided and not yet pushed to the end: (ctx, extract manifest, decide manifest).
        self.pending: tuple[StageContext, ExtractManifest, DecideManifest] | None = None
        #: (ticket, field) -> native value that the latest apply run pushing the ticket decided to write.
        self.wanted: dict[tuple[int, str], Any] = {}
        self.settled = False

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the helpdesk ------------------------------------------------------------------------------

    def open_tickets(self) -> list[int]:
        return [
            t
            for t in self.sim.ticket_ids()
            if (ticket := self.sim.ticket(t))["status"] in (2, 3)
            and not (ticket["spam"] or ticket.get("deleted"))
        ]

    def targets(self, field: str | None = None) -> list[int]:
        """Open tickets the pending run is about to write (``field``, if given), else any open ticket."""
        tickets = self.open_tickets()
        if self.pending is not None:
            ctx, _, decided = self.pending
            rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
            writing = {
                r["ticket_id"]
                for r in rows
                if (r["action"] != "skip" if field is None else (r["action"], r["field"]) == ("apply", field))
            }
            return [t for t in tickets if t in writing] or tickets
        return tickets

    @rule(pick=st.integers(0, 63), edit=st.sampled_from(EDITS))
    def agent_edits(self, pick: int, edit: tuple[str, Any], ticket_id: int | None = None) -> None:
        """An agent changes one field of an open ticket in the UI."""
        tickets = self.targets()
        if not tickets:
            return
        ticket_id = ticket_id or tickets[pick % len(tickets)]
        field, value = edit
        labels = self.sim.labels()
        if field in ("group", "type"):
            value = labels[field][value % len(labels[field])]
        elif field == "tags":
            current = self.sim.ticket(ticket_id)["tags"]
            value = [*current, value] if value and value not in current else []
        self.sim.agent_edit(ticket_id, **{field: value})

    @rule(pick=st.integers(0, 63), field=st.sampled_from(["priority", "group", "type"]))
    def agent_changes_and_restores(self, pick: int, field: str) -> None:
        """An agent changes a field and sets it back (a deliberate Low, say): the value is as before,
        but now it is the agent's."""
        tickets = self.targets(field)
        if tickets:
            self._change_and_restore(tickets[pick % len(tickets)], field)

    def _change_and_restore(self, ticket_id: int, field: str) -> None:
        native = NATIVE[field]
        before = self.sim.ticket(ticket_id)[native]
        other = next(v for v in self.sim.labels()[field] if native_value(self.sim, field, v) != before)
        self.sim.agent_edit(ticket_id, **{field: other})
        self.sim.agent_edit(ticket_id, **{native if field == "group" else field: before})

    @rule(count=st.integers(1, 3))
    def tickets_arrive(self, count: int) -> None:
        self.sim.add_tickets(count)

    @rule(fault=st.sampled_from(FAULTS))
    def arm_fault(self, fault: FaultRule) -> None:
        """A fault on a write path, waiting for the next request it matches."""
        self.sim.faults.add(fault)

    # -- runs --------------------------------------------------------------------------------------

    def _decide(self, mode: str, bulk: bool, group_only: bool) -> None:
        """A new incremental run over the lake's next window, to its decisions (an earlier run not
        pushed to the end stays failed: the watermark has not moved past it). ``group_only``: the
        other fields disabled, so many tickets share one change and go out as bulk updates."""
        write_config(self.config, self.sim, self.tmp, bulk_settle_seconds=0, bulk_update=bulk)
        self.runs += 1
        settings = load_settings(self.config)
        window = next_window(
            Lake(settings.pipeline.lake),
            end=utcnow() + timedelta(seconds=2),
            overlap=timedelta(seconds=settings.pipeline.overlap_seconds),
            initial_lookback=timedelta(hours=settings.pipeline.initial_lookback_hours),
        )
        off = {"enabled": False}
        ctx = StageContext(
            run_id=f"run-{self.runs}",
            flow="triage",
            window_start=window.start,
            window_end=window.end,
            window_source=window.source,
            config_path=str(self.config),
            overrides={
                "pipeline": {"mode": mode},
                **({"fields": {"priority": off, "type": off}} if group_only else {}),
            },
        )

        async def stages() -> tuple[ExtractManifest, PredictManifest, dict]:
            async with build_adapter(ctx.settings().ticket_system) as adapter:
                extracted = await extract(ctx, adapter)
                return (
                    extracted,
                    fake_predictions(ctx, extracted, choose(self.sim)),
                    await adapter.get_fields(),
                )

        extracted, predicted, specs = asyncio.run(stages())
        decided = decide(ctx, extracted, predicted, specs)
        if mode == "shadow":  # the same decisions as an apply run would make
            overrides = {**ctx.overrides, "pipeline": {"mode": "apply"}}
            as_apply = ctx.model_copy(update={"run_id": f"{ctx.run_id}-as-apply", "overrides": overrides})
            assert _decided(ctx, decided) == _decided(as_apply, decide(as_apply, extracted, predicted, specs))
        self.pending = (ctx, extracted, decided)

    @initialize(mode=MODES, bulk=st.booleans())
    def first_run(self, mode: str, bulk: bool) -> None:
        """Every example starts with a run decided on every field (its push comes later, if at all)."""
        self._decide(mode, bulk, group_only=False)

    @rule(mode=MODES, bulk=st.booleans(), group_only=st.booleans())
    def decide_run(self, mode: str, bulk: bool, group_only: bool) -> None:
        """A run decided; its push comes in a later step (agents may edit before it)."""
        self._decide(mode, bulk, group_only)

    @rule(mode=MODES, bulk=st.booleans(), group_only=st.booleans(), agents_during=st.integers(0, 3))
    def whole_run(self, mode: str, bulk: bool, group_only: bool, agents_during: int) -> None:
        """A run from extract to push in one step."""
        self._decide(mode, bulk, group_only)
        self.push_run(agents_during)  # (no agent between decide and push: a step this short has none)

    def agents_before_push(self, how: str | None, pick: int) -> None:
        """Between decide and push an agent edits a ticket the pending run is about to write: one field
        at random, or one of the fields to be written changed and set back (a default first: the Low an
        agent chooses on purpose)."""
        if how is None or self.pending is None:
            return
        ctx, _, decided = self.pending
        rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
        open_now = set(self.open_tickets())
        writes = sorted(
            (self.sim.ticket(r["ticket_id"])[NATIVE[r["field"]]] is None, r["ticket_id"], r["field"])
            for r in rows
            if r["action"] == "apply" and r["ticket_id"] in open_now
        )
        if not writes:
            return
        _, ticket_id, field = writes[0] if how == "restore-default" else writes[pick % len(writes)]
        if how == "edit":
            self.agent_edits(pick, EDITS[pick % len(EDITS)], ticket_id=ticket_id)
        else:
            self._change_and_restore(ticket_id, field)

    @precondition(lambda self: self.pending is not None)
    @rule(agents_during=st.integers(0, 3), agents_before=AGENTS_BEFORE, pick=st.integers(0, 63))
    def push_run(self, agents_during: int = 0, agents_before: str | None = None, pick: int = 0) -> None:
        """Push the pending run, retried once on a transient failure as its Prefect task would be;
        agents edit before it (:meth:`agents_before_push`) and random open tickets after the first
        write answers (before the next re-read)."""
        self.agents_before_push(agents_before, pick)
        ctx, extracted, decided = self.pending
        self._want(ctx, decided)
        before = len(self.sim.writes)
        for _attempt in range(2):
            try:
                asyncio.run(self._push(ctx, extracted, decided, agents_during=agents_during))
            except TicketSystemError as exc:
                assert is_transient(exc), exc
                continue
            if decided.mode == "shadow":
                assert len(self.sim.writes) == before  # shadow sends nothing
            record_stage(
                ctx.lake(),
                run_id=ctx.run_id,
                flow="triage",
                stage="run",
                status="ok",
                started_at=extracted.started_at,
                window=ctx.window,
                partition=ctx.partition,
                high_water_mark=extracted.high_water_mark,
            )
            self.pending = None
            self.settled = self.settled or decided.mode == "apply"  # every write owed is now sent
            return
        self.settled = False  # the run failed: the next run reads its window again

    @precondition(lambda self: self.pending is not None)
    @rule(writes=st.integers(1, 4), acted=st.booleans(), agents_before=AGENTS_BEFORE, pick=st.integers(0, 63))
    def crash_push(self, writes: int, acted: bool, agents_before: str | None, pick: int) -> None:
        """The process dies at the ``writes``-th write request: after the helpdesk acted on it (its
        result never recorded) or before it was sent. The run stays pending: a retry may follow."""
        self.agents_before_push(agents_before, pick)
        ctx, extracted, decided = self.pending
        self._want(ctx, decided)
        self.settled = False
        with suppress(Crash, TicketSystemError):
            asyncio.run(self._push(ctx, extracted, decided, crash_at=writes, crash_acted=acted))

    async def _push(
        self,
        ctx: StageContext,
        extracted: ExtractManifest,
        decided: DecideManifest,
        *,
        agents_during: int = 0,
        crash_at: int | None = None,
        crash_acted: bool = False,
    ) -> None:
        dead = False
        real_write_audit = push_state.write_audit

        def write_audit(lake, rows, **kwargs):
            if dead:
                raise Crash()
            return real_write_audit(lake, rows, **kwargs)

        async with build_adapter(ctx.settings().ticket_system) as adapter:
            calls = 0
            for name in ("update_ticket", "bulk_update", "add_note"):
                real = getattr(adapter, name)

                async def write(*args, _real=real, **kwargs):
                    nonlocal calls, dead
                    calls += 1
                    if calls == crash_at:
                        if crash_acted:
                            await _real(*args, **kwargs)
                        dead = True
                        raise Crash()
                    return await _real(*args, **kwargs)

                setattr(adapter, name, write)
            request = adapter.client.request
            edits = agents_during

            async def agents_at_work(method, path, **kwargs):
                nonlocal edits
                response = await request(method, path, **kwargs)
                # after a write's answer (a bulk job's once it has run), never between a re-read and its write
                if edits and (method == "PUT" or path.endswith("/notes") or path.startswith("/jobs/")):
                    edits -= 1
                    self.sim.random_agent_edit()
                return response

            adapter.client.request = agents_at_work
            push_state.write_audit = write_audit
            try:
                await push(ctx, decided, extracted, adapter)
            finally:
                push_state.write_audit = real_write_audit

    def _want(self, ctx: StageContext, decided: DecideManifest) -> None:
        """What an apply run decided per ticket replaces what earlier apply runs decided for it."""
        if decided.mode != "apply":
            return
        rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
        decided_tickets = {row["ticket_id"] for row in rows}
        self.wanted = {key: value for key, value in self.wanted.items() if key[0] not in decided_tickets}
        for row in rows:
            if row["action"] == "apply":
                self.wanted[(row["ticket_id"], row["field"])] = native_value(
                    self.sim, row["field"], row["label"]
                )

    # -- invariants, from the simulator's own logs --------------------------------------------------

    @invariant()
    def no_write_doubled(self) -> None:
        assert doubled(self.sim) == []

    @invariant()
    def no_agent_value_overwritten(self) -> None:
        assert overwritten(self.sim) == []

    @invariant()
    def no_write_lost(self) -> None:
        """Once a push in apply mode has completed, every write the latest apply decision on a ticket
        asked for is on it, unless a person changed that field or the ticket is gone."""
        if self.settled:
            assert lost(self.sim, self.wanted) == []


def _decided(ctx: StageContext, decided: DecideManifest) -> list[tuple]:
    rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    return sorted((r["ticket_id"], r["field"], r["action"], r["label"], r["reason_code"]) for r in rows)


@pytest.fixture(scope="module")
def helpdesk():
    with run_simulator(SIM_CONFIG) as sim:
        yield sim


def test_reads_pushes_agents_faults_and_crashes_interleaved(helpdesk, monkeypatch):
    """30 random sequences of up to 15 steps (derandomized: the same ones in every CI run); a failing
    sequence is shrunk and printed as the calls that reproduce it."""
    monkeypatch.setenv("FRESHDESK_API_KEY", API_KEY)
    WriteSafety.sim = helpdesk
    run_state_machine_as_test(
        WriteSafety,
        settings=settings(
            max_examples=30,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_an_agents_low_set_back_between_decide_and_push_is_not_overwritten(helpdesk, monkeypatch):
    """The case the machine found (shrunk: ``first_run(mode='apply')``, ``push_run(agents_before='restore')``):
    an untouched ticket decided to get priority High; an agent raises its priority and sets it back to
    Low before the push. The Low is the agent's now, though it looks the same: push leaves it alone."""
    monkeypatch.setenv("FRESHDESK_API_KEY", API_KEY)
    WriteSafety.sim = helpdesk
    machine = WriteSafety()
    try:
        helpdesk.add_tickets(12)
        machine._decide("apply", bulk=False, group_only=False)
        ctx, _, decided = machine.pending
        rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
        target = min(r["ticket_id"] for r in rows if r["field"] == "priority" and r["action"] == "apply")
        helpdesk.agent_edit(target, priority="Medium")
        helpdesk.agent_edit(target, priority="Low")
        machine.push_run()
        assert helpdesk.ticket(target)["priority"] == 1
        assert (
            overwritten(helpdesk) == [] and doubled(helpdesk) == [] and lost(helpdesk, machine.wanted) == []
        )
        assert any(c.source == "api" and c.ticket_id == target for c in helpdesk.changes)  # its group went
    finally:
        machine.teardown()
