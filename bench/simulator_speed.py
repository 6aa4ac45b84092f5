"""How fast the Freshdesk simulator seeds and serves (no rate limits), so tests and benchmarks built
on it measure the client, not the simulator.

    .venv/bin/python bench/simulator_speed.py [--tickets 35000] [--out bench/results/simulator_speed.json]

Measures: seeding time; a full incremental read (``updated_since``, ``order_by=updated_at``,
``include=description``, 100 per page, restarting at the 300-page cap) over HTTP with httpx;
median latency of ``GET /tickets/{id}`` and ``PUT /tickets/{id}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import httpx
from _common import served_url

from triage.simulator import Simulator, SimulatorConfig
from triage.simulator.server import BackgroundServer


def full_read(client: httpx.Client) -> tuple[int, int]:
    """Every visible ticket through the 300-page cap; returns (distinct tickets, requests)."""
    since, page, requests = "2000-01-01T00:00:00Z", 1, 0
    seen: set[int] = set()
    while True:
        params: dict[str, str | int] = {
            "updated_since": since,
            "order_by": "updated_at",
            "order_type": "asc",
            "per_page": 100,
        }
        response = client.get("/tickets", params={**params, "page": page, "include": "description"})
        response.raise_for_status()
        requests += 1
        rows = response.json()
        seen.update(row["id"] for row in rows)
        if "link" not in response.headers:
            return len(seen), requests
        since, page = (rows[-1]["updated_at"], 1) if page == 300 else (since, page + 1)


def median_ms(call, repeat: int = 200) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=35_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/simulator_speed.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    sim = Simulator(SimulatorConfig(tickets=args.tickets, open_tickets=1000, seed=1))
    seed_seconds = time.perf_counter() - started
    server = BackgroundServer(sim, "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=served_url(sim), auth=(sim.api_key, "X")) as client:
            started = time.perf_counter()
            tickets, requests = full_read(client)
            read_seconds = time.perf_counter() - started
            some_id = min(sim.truth())
            get_ms = median_ms(lambda: client.get(f"/tickets/{some_id}"))
            flip = iter(range(10**6))
            put_ms = median_ms(
                lambda: client.put(f"/tickets/{some_id}", json={"priority": 1 + next(flip) % 4})
            )
    finally:
        server.stop()
    result = {
        "tickets_seeded": args.tickets,
        "seed_seconds": round(seed_seconds, 2),
        "full_read": {
            "tickets": tickets,
            "requests": requests,
            "seconds": round(read_seconds, 2),
            "tickets_per_second": round(tickets / read_seconds),
        },
        "get_ticket_median_ms": get_ms,
        "put_ticket_median_ms": put_ms,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
