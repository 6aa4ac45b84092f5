"""Many helpdesks in one process: each account's adapter paces on its own rate budget, so a 429 from one
Freshdesk account pauses that account's calls and never another's."""

from __future__ import annotations

import asyncio
import time

from triage.adapters.registry import build_adapter
from triage.settings import TicketSystemSettings
from triage.simulator import FaultRule, SimulatorConfig, run_simulator

#: acme's helpdesk answers its next ticket read with a 429 asking for 30 s.
STORM = FaultRule(kind="storm", next=1, retry_after=30, method="GET", path="/tickets/")


def settings(account: str, sim) -> TicketSystemSettings:
    return TicketSystemSettings(
        adapter="freshdesk", account=account, base_url=sim.base_url, freshdesk_api_key=sim.api_key
    )


async def test_a_429_on_one_account_pauses_that_account_and_not_the_other():
    acme_sim = run_simulator(SimulatorConfig(tickets=20, open_tickets=2, domain="acme", faults=(STORM,)))
    globex_sim = run_simulator(SimulatorConfig(tickets=20, open_tickets=2, domain="globex"))
    with acme_sim as acme_helpdesk, globex_sim as globex_helpdesk:
        async with (
            build_adapter(settings("acme", acme_helpdesk)) as acme,
            build_adapter(settings("globex", globex_helpdesk)) as globex,
        ):
            assert acme.client.budget is not globex.client.budget
            paused = asyncio.create_task(acme.get_ticket(1))
            while acme.client.budget.wait_time(1) <= 0:  # acme has had its 429
                assert not paused.done()
                await asyncio.sleep(0.01)
            started = time.monotonic()
            tickets = [await globex.get_ticket(ticket_id) for ticket_id in (1, 2, 3)]
            assert time.monotonic() - started < 5  # globex is not held by acme's 30 s
            assert [t.id for t in tickets] == [1, 2, 3] and globex.client.budget.wait_time(1) <= 0
            assert not paused.done() and acme.client.budget.wait_time(1) > 20
            paused.cancel()
