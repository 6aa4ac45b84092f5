"""Push while Freshdesk's clock is 15 minutes behind this machine's: its re-reads must still see an
agent's edit, so none is overwritten (a clock ahead only makes a re-read start earlier than needed),
and a rerun still writes nothing. The stage tests' own scenarios, on a simulator whose clock is set
back (before the re-reads started on Freshdesk's clock, the first two overwrote the agent's edit)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
import test_stages as stages

from triage.simulator import SimulatorConfig, run_simulator
from triage.tasks.extract import extract

pytestmark = pytest.mark.asyncio


@pytest.fixture
def sim():
    """The stage tests' simulator, its clock (every stamp and ``Date``) 15 minutes behind ours."""
    config = SimulatorConfig(
        tickets=240, open_tickets=24, seed=11, bulk_delay_seconds=0.05, clock_offset_seconds=-900
    )
    with run_simulator(config) as simulator:
        yield simulator


async def test_an_agents_edit_between_extract_and_push_is_not_overwritten(make_ctx, adapter_for, sim):
    await stages.test_an_agents_edit_between_extract_and_push_is_not_overwritten(make_ctx, adapter_for, sim)


@pytest.mark.parametrize("bulk", [False, True])
async def test_an_agents_edit_while_push_is_writing_is_not_overwritten(
    make_ctx, adapter_for, sim, config, monkeypatch, bulk
):
    await stages.test_an_agents_edit_while_push_is_writing_is_not_overwritten(
        make_ctx, adapter_for, sim, config, monkeypatch, bulk
    )


async def test_a_rerun_knows_its_own_writes_and_writes_nothing(make_ctx, adapter_for, sim):
    await stages.test_apply_writes_only_confident_known_values_then_a_rerun_writes_nothing(
        make_ctx, adapter_for, sim
    )


async def test_a_rerun_knows_a_bulk_update_as_its_own_write(make_ctx, adapter_for, sim, config):
    """A bulk update is known by the span from sending it to its result, on this machine's clock;
    Freshdesk stamped its tickets 15 minutes earlier by its own."""
    await stages.test_identical_changes_go_out_as_bulk_updates(make_ctx, adapter_for, sim, config)
    (bulk,) = [w for w in sim.writes if w.path.endswith("/tickets/bulk_update")]
    again = make_ctx("run-2")
    async with adapter_for(again) as adapter:
        extracted = await extract(again, adapter)
    tickets = again.lake().read_paths("tickets", extracted.paths)
    own = tickets.filter(pc.field("skip_reason") == "own_write").column("ticket_id").to_pylist()
    assert set(bulk.body["bulk_action"]["ids"]) <= set(own)
