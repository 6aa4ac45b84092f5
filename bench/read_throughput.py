"""Incremental-read throughput of the Freshdesk adapter at Growth-plan limits, against their ceiling.

    .venv/bin/python bench/read_throughput.py [--tickets 36000] [--window-seconds 2] \
        [--out bench/results/read_throughput.json]

The simulator enforces Growth's limits (tickets list: 20 calls per window; total: 200 credits per
window; a page with ``include=description`` costs 3 credits) in a window scaled down from 60 s
so the run takes seconds; the adapter is configured with the same plan and window. The ceiling
those limits allow is 20 pages x 100 = 2,000 tickets per window.

Reported:
* sustained rate: pages after the first window's burst, per window, from the send times of the
  first and last list call: ``(pages - 20) / (t_last - t_first) * window``; 20 is the ceiling;
  in tickets, times the new tickets a page brought (each page repeats the rows of the second it
  starts from, so slightly under 100);
* the whole run's rate (which the free first burst flatters) in tickets per minute, scaled to
  Freshdesk's 60-second window;
* the share of requests answered 429.
Goal: sustained >= 90% of the ceiling with < 1% 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig
from triage.simulator import SimulatorConfig, run_simulator

LIST_CALLS_PER_WINDOW = 20
TICKETS_PER_PAGE = 100
CEILING_TICKETS_PER_WINDOW = LIST_CALLS_PER_WINDOW * TICKETS_PER_PAGE


async def read_everything(adapter: FreshdeskAdapter) -> tuple[int, list[float], float]:
    """Read all tickets; returns (distinct tickets, send time of each list call, elapsed seconds)."""
    sent: list[float] = []
    request = adapter.client.request

    async def timed(method: str, path: str, **kwargs: Any):
        if path == "/tickets":
            sent.append(time.monotonic())
        return await request(method, path, **kwargs)

    adapter.client.request = timed  # type: ignore[method-assign]
    started = time.monotonic()
    ids = {ticket.id async for ticket in adapter.iter_updated_tickets(datetime(2000, 1, 1, tzinfo=UTC))}
    return len(ids), sent, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=36_000)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/read_throughput.json"))
    args = parser.parse_args()
    window = args.window_seconds

    config = SimulatorConfig(
        tickets=args.tickets, open_tickets=100, plan="growth", window_seconds=window, seed=5
    )
    with run_simulator(config) as sim:
        adapter_config = FreshdeskConfig(
            base_url=sim.base_url,
            freshdesk_api_key=SecretStr(sim.api_key),
            plan="growth",
            rate_window_seconds=window,
        )

        async def run() -> tuple[int, list[float], float]:
            adapter = FreshdeskAdapter(adapter_config)
            async with adapter:  # typed as the base class: the Freshdesk one is read
                return await read_everything(adapter)

        tickets, sent, elapsed = asyncio.run(run())
        stats = sim.stats()

    pages = len(sent)
    sustained_pages = (pages - LIST_CALLS_PER_WINDOW) / (sent[-1] - sent[0]) * window
    requests = stats["requests"]
    refused = stats["by_status"].get("429", 0)
    result = {
        "tickets_read": tickets,
        "list_calls": pages,
        "window_seconds": window,
        "windows_elapsed": round(elapsed / window, 2),
        "elapsed_seconds": round(elapsed, 2),
        "sustained_pages_per_window": round(sustained_pages, 3),
        "new_tickets_per_page": round(tickets / pages, 2),
        "sustained_tickets_per_window": round(sustained_pages * tickets / pages),
        "ceiling_tickets_per_window": CEILING_TICKETS_PER_WINDOW,
        "sustained_pages_share_of_call_limit": round(sustained_pages / LIST_CALLS_PER_WINDOW, 4),
        "sustained_share_of_ceiling": round(
            sustained_pages * tickets / pages / CEILING_TICKETS_PER_WINDOW, 4
        ),
        "whole_run_tickets_per_minute_at_60s_window": round(tickets / (elapsed / window)),
        "requests": requests,
        "responses_429": refused,
        "share_429": round(refused / requests, 4) if requests else 0.0,
        "machine": f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "command": f"bench/read_throughput.py --tickets {args.tickets} --window-seconds {window}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
