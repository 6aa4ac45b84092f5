"""A full incremental read while agents edit tickets: how many tickets are lost (the goal: none).

    .venv/bin/python bench/read_under_edits.py [--tickets 35000] [--edits-per-minute 600] \
        [--plan pro] [--window-seconds 60] [--out bench/results/read_under_edits.json]

The simulator serves ``--tickets`` tickets under a plan's rate limits (Pro by default: 100 list
calls and 400 credits a minute, a page with descriptions costing 3, so 35,000 tickets take about
3.5 minutes to read) while its agents edit unresolved tickets at ``--edits-per-minute`` on the
server's own thread. The adapter, configured with the same plan, reads everything from 2000-01-01.

Judged from the simulator's state, not the reader's: every ticket the list showed when the read
began must be read, or (a read ends a little past the server's present when it began) edited since
and read by the next read, which starts a few seconds before the first began, once the agents stop
(``lost``: those read by neither; ``deferred``: those only the next read had). No ``(id, updated_at)``
version twice, versions in ascending order. Also reported: the edits made during the read, the
tickets edited then whose new version the read still reached, calls, 429s, time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig
from triage.adapters.freshdesk.incremental import PRESENT_SLACK
from triage.simulator import Simulator, SimulatorConfig, run_simulator
from triage.simulator.timeutil import format_ts

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
#: How far past the server's Date a read without an end goes (the adapter's PRESENT_SLACK).
SLACK_SECONDS = int(PRESENT_SLACK.total_seconds())


def listed_now(sim: Simulator) -> set[int]:
    """Ids of the tickets ``GET /tickets`` lists now (not spam, not deleted)."""
    return {
        tid for tid in sim.ticket_ids() if not (sim.ticket(tid)["spam"] or sim.ticket(tid).get("deleted"))
    }


async def read_all(config: FreshdeskConfig, since: datetime = EPOCH) -> list[tuple[int, datetime]]:
    async with FreshdeskAdapter(config) as adapter:
        return [(t.id, t.updated_at) async for t in adapter.iter_updated_tickets(since)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=35_000)
    parser.add_argument("--edits-per-minute", type=float, default=600.0)
    parser.add_argument("--plan", default="pro", choices=("growth", "pro", "enterprise", "unlimited"))
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/results/read_under_edits.json"))
    args = parser.parse_args()

    config = SimulatorConfig(
        tickets=args.tickets,
        open_tickets=min(2_000, args.tickets // 10),
        open_preset_fraction=0.3,
        plan=args.plan,
        window_seconds=args.window_seconds,
        agent_edits_per_minute=args.edits_per_minute,
        seed=args.seed,
    )
    with run_simulator(config) as sim:
        limits = (
            {"plan": "custom", "rate_limit_total": 10**6, "rate_limit_tickets_list": 10**6}
            if args.plan == "unlimited"
            else {"plan": args.plan, "rate_window_seconds": args.window_seconds}
        )
        adapter_config = FreshdeskConfig(
            base_url=sim.base_url, freshdesk_api_key=SecretStr(sim.api_key), **limits
        )
        changes_before = len(sim.changes)
        before, began = listed_now(sim), datetime.fromtimestamp(sim.clock.now(), UTC)
        started = time.monotonic()
        versions = asyncio.run(read_all(adapter_config))
        elapsed = time.monotonic() - started
        sim.agents.stop()
        during = [c for c in sim.changes[changes_before:] if c.source == "agent"]
        stats = sim.stats()
        latest = max((sim.ticket(c.ticket_id)["updated_at"] for c in during), default="")
        while format_ts(sim.clock.now() + SLACK_SECONDS) <= latest:
            time.sleep(0.2)  # the simulator stamps a ticket's second edit within a second a second on
        next_read = {tid for tid, _ in asyncio.run(read_all(adapter_config, began - timedelta(seconds=5)))}

    read_ids = {tid for tid, _ in versions}
    stamps = [stamp for _, stamp in versions]
    newest: dict[int, datetime] = {}
    for tid, stamp in versions:
        newest[tid] = max(stamp, newest.get(tid, stamp))
    last_edit = {c.ticket_id: datetime.fromisoformat(c.time.replace("Z", "+00:00")) for c in during}
    reached = sum(newest.get(tid, EPOCH) >= at for tid, at in last_edit.items())
    result = {
        "tickets_listed_at_start": len(before),
        "tickets_read": len(read_ids),
        "lost": len(before - read_ids - next_read),
        "deferred_to_next_read": len((before - read_ids) & next_read),
        "versions_read": len(versions),
        "versions_read_twice": len(versions) - len(set(versions)),
        "ascending": stamps == sorted(stamps),
        "agent_edits_during_read": len(during),
        "tickets_edited_during_read": len(last_edit),
        "edited_tickets_read_at_or_after_their_last_edit": reached,
        "edits_per_minute": args.edits_per_minute,
        "plan": args.plan,
        "window_seconds": args.window_seconds,
        "list_calls": stats["by_route"].get("GET /tickets", 0),
        "responses_429": stats["by_status"].get("429", 0),
        "elapsed_seconds": round(elapsed, 1),
        "machine": f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "command": "bench/read_under_edits.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
