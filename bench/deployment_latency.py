"""Benchmark: from an hourly run's scheduled start to Completed, on a real server and process worker.

A `prefect server start` (PostgreSQL by default), `prefect work-pool create`, `prefect deploy --all`
and `prefect worker start`, exactly as docs/operators.md ("Deployment") and tests/flows/test_server_deployments.py
run them, against the simulator. The train deployment runs once (setup, timed apart); then
``--runs`` hourly runs are each scheduled ``--lead`` seconds ahead (a Scheduled run, as the scheduler
creates them) and timed from the scheduled start to Completed: the worker's pickup and the flow-run
process's start-up, then the flow itself. The simulator is reseeded and each run gets a lake of its own
(the ``config`` parameter), so each one triages and writes the same open tickets.

    .venv/bin/python bench/deployment_latency.py                  # PostgreSQL, 3 runs
    .venv/bin/python bench/deployment_latency.py --database sqlite --runs 1 --out /tmp/x

Writes bench/results/deployment_latency.json and .md (or under --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "flows"))

from _common import served_url  # noqa: E402
from flow_config import SIMULATOR, write_config  # noqa: E402
from prefect_server import Server, Worker, database  # noqa: E402

from triage.simulator import run_simulator  # noqa: E402

POOL = "triage"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def scheduled_run(server: Server, lead: float, config: Path) -> str:
    """A Scheduled run of triage/hourly on ``config`` starting ``lead`` seconds from now; its id."""
    deployment = server.deployment("triage/hourly")
    when = datetime.now(UTC) + timedelta(seconds=lead)
    body = {
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}},
        "parameters": {"params": {"config": str(config)}},
    }
    return server.post(f"/deployments/{deployment['id']}/create_flow_run", body)["id"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lead", type=float, default=20.0, help="Seconds between scheduling and the start.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, run_simulator(SIMULATOR) as sim:
        folder = Path(tmp)
        config = write_config(
            folder / "triage.yml", served_url(sim), lake=folder / "lake", store=folder / "models"
        )
        with database(args.database, folder) as url:
            server = Server(folder, url).start()
            try:
                env = server.client_env(
                    PREFECT_HOME=str(folder / "cli-home"),
                    TRIAGE_WORK_POOL=POOL,
                    TRIAGE_PREDICT_WORK_POOL=POOL,
                )
                for command in (("work-pool", "create", POOL, "--type", "process"), ("deploy", "--all")):
                    done = server.prefect(*command, env=env)
                    assert done.returncode == 0, done.stderr[-2000:]
                with Worker(
                    server, POOL, "bench", TRIAGE_CONFIG=str(config), FRESHDESK_API_KEY=sim.api_key
                ) as worker:
                    setup = server.run_deployment("train/train", {"params": {"days": 400}}).json()["id"]
                    assert server.wait(setup, worker=worker)["state"]["type"] == "COMPLETED"
                    runs = []
                    for index in range(args.runs):
                        sim.reset()
                        lake = folder / f"lake-{index}"
                        own = write_config(
                            folder / f"run-{index}.yml", served_url(sim), lake=lake, store=folder / "models"
                        )
                        run = server.wait(scheduled_run(server, args.lead, own), worker=worker)
                        assert run["state"]["type"] == "COMPLETED", run["state"]
                        scheduled = parse_time(run["expected_start_time"])
                        started, ended = parse_time(run["start_time"]), parse_time(run["end_time"])
                        runs.append(
                            {
                                "scheduled_to_completed_s": round((ended - scheduled).total_seconds(), 2),
                                "scheduled_to_running_s": round((started - scheduled).total_seconds(), 2),
                                "flow_s": round((ended - started).total_seconds(), 2),
                                "writes": sum(
                                    1 for w in sim.writes if w.method in ("PUT", "POST") and w.status < 300
                                ),
                            }
                        )
                        time.sleep(1)
            finally:
                server.stop()
    record(args, runs)


def record(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    totals = [r["scheduled_to_completed_s"] for r in runs]
    result = {
        "command": "python bench/deployment_latency.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "database": args.database,
        "open_tickets": SIMULATOR.open_tickets,
        "runs": runs,
        "scheduled_to_completed_s": {
            "min": min(totals),
            "median": statistics.median(totals),
            "max": max(totals),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "deployment_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {i} | {r['scheduled_to_running_s']} | {r['flow_s']} | {r['scheduled_to_completed_s']} | {r['writes']} |"
        for i, r in enumerate(runs, 1)
    )
    (args.out / "deployment_latency.md").write_text(
        f"""# Hourly deployment: scheduled start to Completed on a process worker

`{result["command"]}` ({result["when"]}; {result["machine"]}; server on {args.database}).

A real `prefect server start`, `prefect deploy --all` and `prefect worker start` (docs/operators.md, "Deployment"),
the simulator with {SIMULATOR.open_tickets} open tickets to triage in apply mode, each run scheduled
{args.lead:g} s ahead. Times from the flow run as the server records it.

| run | scheduled → Running (s) | Running → Completed (s) | scheduled → Completed (s) | write requests |
|---|---|---|---|---|
{rows}

Scheduled start to Completed: min {min(totals)} s, median {statistics.median(totals)} s, max {max(totals)} s.
"Scheduled → Running" can be negative: the worker polls every second here (`PREFECT_WORKER_QUERY_SECONDS=1`;
10 s by default) and picks a run up to 10 s before its time (`PREFECT_WORKER_PREFETCH_SECONDS`), so the
flow-run process's start-up (Python, Prefect, torch and the flow's imports) is done by the scheduled
start. A worker that polls every 10 s and a process start-up longer than the prefetch would show here.
"""
    )
    print(json.dumps(result["scheduled_to_completed_s"]))


if __name__ == "__main__":
    main()
