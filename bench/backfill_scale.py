"""Benchmark: a 200,000-ticket backfill with predict on 1 and 2 Dask workers (issue 12, scale-out).

Set-up (timed apart): a simulated Freshdesk holds ``--tickets`` open, untriaged tickets created over the
last ``--days`` days and ``--history`` resolved ones; the train flow learns from the history (the packaged
MiniLM at ``--max-length`` tokens). The simulator has no rate limit and no bulk-job delay, so the run
measures this machine; the time Freshdesk's rate limits would add is computed from the requests the run
made and each plan's per-minute limits (reference §3), not slept.

For each worker count in ``--workers``: the simulator is reseeded (every ticket untriaged again), a
``dask.distributed`` ``LocalCluster`` of that many worker processes (one thread each) is started, and its
address is the configuration's ``pipeline.dask_address``: a long-lived cluster, as a backfill should use
(each worker loads the model once for all slices). Then one backfill flow run (in process, the
``triage backfill`` way) triages the whole range in ``--batch-hours`` slices, into a fresh lake, in
``--mode`` (apply: every stage, writes included). Recorded per run: wall time and tickets per second; the
stages' seconds summed over the slices (from the lake's ``runs`` table); each worker's busy seconds and
parts (Dask's task stream) and peak RSS (``VmHWM``, read in each worker: a spawned process's ``ru_maxrss``
would carry its parent's); the driver's peak RSS
(this process: the simulator's 200,000 tickets included); requests by route. Afterwards, in this process
on one thread, the model alone on one part's worth of tickets: the inference share of a part.

With ``--plan`` the simulator enforces that Freshdesk plan's limits and the adapter paces to them, in a
rate window of ``--window`` seconds (shortened, so the limits' ratios hold and the run takes minutes):
the requests a paced run makes, and the Freshdesk minutes it takes (wall time / window).

    .venv/bin/python bench/backfill_scale.py                 # 200,000 tickets, 1 and 2 workers (~1 h)
    .venv/bin/python bench/backfill_scale.py --tickets 6000 --history 1500 --batch-hours 96 --out /tmp/b
    .venv/bin/python bench/backfill_scale.py --tickets 20000 --days 2 --workers 1 --plan enterprise \
        --window 6 --name backfill_paced          # the paced requests of 20,000 tickets (Enterprise)
    .venv/bin/python bench/backfill_scale.py --tickets 5000 --history 1500 --days 2 --workers 1 \
        --plan enterprise --window 60 --name backfill_realtime   # Enterprise in real time (~15 min)

Writes bench/results/backfill_scale.json and .md (or under --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
import pyarrow.compute as pc
import torch
from _common import ROOT, add_work_arguments, fresh_work, result_head, served_url
from distributed import Client, LocalCluster, get_task_stream
from prefect.server.api.server import SubprocessASGIServer

sys.path.insert(0, str(ROOT))

from triage.flows.backfill import BackfillParams, backfill_flow
from triage.flows.train import TrainParams, train_flow
from triage.lake import Lake
from triage.lake.runs import run_history
from triage.models.inference import InferenceEngine
from triage.simulator import PLAN_LIMITS, SimulatorConfig, run_simulator
from triage.tasks.predict import CHUNK_ROWS

GIB = 1024**3
#: The adapter's own pacing off (the simulator has no limit): the rate limits' share is computed instead.
UNPACED = {
    "plan": "custom",
    **{f"rate_limit_{k}": 10**6 for k in ("total", "tickets_list", "ticket_update", "ticket_create")},
}
#: Credits of one list call with ``include=description`` (reference §3.4): 1 + 2.
LIST_CREDITS = 3


def write_config(
    path: Path, base_url: str, lake: Path, store: Path, args: argparse.Namespace, **pipeline: Any
) -> Path:
    """``--plan``'s limits in a ``--window``-second rate window (none: unpaced), ``--max-length``,
    ``--mode``."""
    return _common.write_config(
        path,
        base_url,
        limits={
            # the default 2 s at a real 60-s window, shortened with it; 0.05 s unpaced
            "bulk_poll_interval_seconds": 0.05 if args.plan is None else 2.0 * args.window / 60,
            **(UNPACED if args.plan is None else {"plan": args.plan, "rate_window_seconds": args.window}),
        },
        store=store,
        max_length=args.max_length,
        lake=lake,
        mode=args.mode,
        **pipeline,
    )


def stage_seconds(lake: Lake, run_ids: list[str]) -> dict[str, float]:
    """Seconds per stage summed over the slices' runs."""
    out: dict[str, float] = {}
    for run_id in run_ids:
        for r in run_history(lake, run_id):
            if r["status"] == "ok":
                seconds = (r["finished_at"] - r["started_at"]).total_seconds()
                out[r["stage"]] = round(out.get(r["stage"], 0.0) + seconds, 1)
    return out


def lake_counts(lake: Lake) -> dict[str, int]:
    predictions = lake.scan("predictions", columns=["ticket_id", "field"])
    audit = lake.scan(
        "audit", filter=(pc.field("phase") == "result") & (pc.field("status") == "ok"), columns=["ticket_id"]
    )
    return {
        "tickets_extracted": lake.scan("tickets", columns=["ticket_id"]).num_rows,
        "tickets_predicted": len(set(predictions.column("ticket_id").to_pylist())),
        "prediction_rows": predictions.num_rows,
        "tickets_written": len(set(audit.column("ticket_id").to_pylist())),
    }


def peak_rss() -> int:
    """This process's peak RSS in bytes since it started (``VmHWM``; Linux)."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def worker_stats(client: Client, stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker: parts computed, busy seconds (compute), peak RSS in GiB."""
    peaks = client.run(peak_rss)
    busy: dict[str, list[float]] = {address: [] for address in peaks}
    for task in stream:
        seconds = sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        busy.setdefault(task["worker"], []).append(seconds)
    return [
        {
            "worker": address,
            "parts": len(busy[address]),
            "busy_seconds": round(sum(busy[address]), 1),
            "seconds_per_part_median": round(sorted(busy[address])[len(busy[address]) // 2], 2)
            if busy[address]
            else None,
            "peak_rss_gib": round(peaks[address] / GIB, 2),
        }
        for address in sorted(busy)
    ]


def requests(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        route: after[route] - before.get(route, 0)
        for route in sorted(after)
        if after[route] - before.get(route, 0)
    }


def one_backfill(sim: Any, workers: int, store: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Reseed, start a cluster of ``workers``, backfill the whole range, and measure."""
    sim.reset()
    folder = args.work / f"workers-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=args.days, hours=1)).replace(minute=0, second=0)
    end = now + timedelta(seconds=1)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        config = write_config(
            folder / "config.yml",
            served_url(sim),
            folder / "lake",
            store,
            args,
            dask_address=cluster.scheduler_address,
        )
        routes_before = dict(sim.stats()["by_route"])
        load_before = os.getloadavg()
        started = time.perf_counter()
        with get_task_stream(client) as stream:
            summary = backfill_flow(
                BackfillParams(
                    start=start,
                    end=end,
                    batch_hours=args.batch_hours,
                    mode=args.mode,
                    config=str(config),
                    children=False,
                )
            )
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
        workers_out = worker_stats(client, stream.data)
    lake = Lake(folder / "lake")
    counts = lake_counts(lake)
    made = requests(routes_before, dict(sim.stats()["by_route"]))
    return {
        "workers": workers,
        "window": [start.isoformat(), end.isoformat()],
        "slices": summary.batches,
        "wall_seconds": round(wall, 1),
        "freshdesk_minutes": round(wall / args.window, 1) if args.plan else None,
        "tickets_per_second": round(counts["tickets_predicted"] / wall, 1),
        "stage_seconds": stage_seconds(lake, summary.processed),
        "counts": counts,
        "worker": workers_out,
        "driver_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2),
        "requests": made,
        "rate_limited_minutes": rate_limited_minutes(made),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def model_alone(store: Path, lake: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The model on one part's worth of the backfill's tickets, one thread: inference's share of a part."""
    tickets = (
        Lake(lake)
        .scan("tickets", columns=["ticket_id", "subject", "description"])
        .slice(0, CHUNK_ROWS)
        .to_pandas()
    )
    version = json.loads((store / "current.json").read_text())["version"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = InferenceEngine.load(str(store), version, device="cpu")
        engine.predict_frame(tickets.head(64))  # warm-up
        started = time.perf_counter()
        engine.predict_frame(tickets)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return {
        "tickets": len(tickets),
        "seconds": round(seconds, 2),
        "tickets_per_second": round(len(tickets) / seconds, 1),
    }


def rate_limited_minutes(requests: dict[str, int]) -> dict[str, float]:
    """Minutes Freshdesk's per-minute limits would hold ``requests`` (by route) to, per plan: the
    tightest of the credit total (a list page with ``include=description``: 3 credits) and the
    ticket-list and ticket-update sub-limits (reference §3)."""
    lists = requests.get("GET /tickets", 0)
    updates = requests.get("PUT /tickets/{id}", 0)
    credits = sum(requests.values()) + (LIST_CREDITS - 1) * lists
    out: dict[str, float] = {}
    for plan in ("growth", "pro", "enterprise"):
        limits = PLAN_LIMITS[plan]
        assert limits.tickets_list is not None and limits.ticket_update is not None
        out[plan] = round(
            max(credits / limits.total, lists / limits.tickets_list, updates / limits.ticket_update), 1
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=200_000, help="open tickets to backfill")
    parser.add_argument("--history", type=int, default=3000, help="resolved tickets to train on")
    parser.add_argument("--days", type=int, default=20, help="days the open tickets were created over")
    parser.add_argument("--batch-hours", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--mode", default="apply")
    parser.add_argument(
        "--plan", default=None, help="Freshdesk plan paced by simulator and adapter (default: none)"
    )
    parser.add_argument(
        "--window", type=float, default=60.0, help="their rate window in seconds (with --plan)"
    )
    parser.add_argument("--seed", type=int, default=11)
    add_work_arguments(parser, name="backfill_scale", work="bench-backfill")
    args = parser.parse_args()

    store = fresh_work(args)
    sim_config = SimulatorConfig(
        tickets=args.tickets + args.history,
        open_tickets=args.tickets,
        open_within_hours=args.days * 24,
        history_days=args.days + 60,
        seed=args.seed,
        **(
            {"bulk_delay_seconds": 0.0}
            if args.plan is None
            else {"plan": args.plan, "window_seconds": args.window}
        ),
    )
    result: dict[str, Any] = {
        **result_head(),
        "tickets": args.tickets,
        "history": args.history,
        "batch_hours": args.batch_hours,
        "max_length": args.max_length,
        "mode": args.mode,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    # One Prefect server for the flows here and the tasks in the Dask workers (they inherit its address;
    # without one, each worker would start a temporary server of its own).
    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with run_simulator(sim_config) as sim:
            measure(sim, sim_config, store, args, result)
    finally:
        server.stop()
    result["model_alone"] = model_alone(store, args.work / f"workers-{args.workers[0]}" / "lake", args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


def measure(
    sim: Any, sim_config: SimulatorConfig, store: Path, args: argparse.Namespace, result: dict[str, Any]
) -> None:
    """Train (unless ``--store``), then one backfill per worker count."""
    os.environ["FRESHDESK_API_KEY"] = sim.api_key
    if args.store is None:
        config = write_config(args.work / "train.yml", served_url(sim), args.work / "train-lake", store, args)
        started = time.perf_counter()
        trained = train_flow(TrainParams(config=str(config), days=sim_config.history_days + 30))
        result["train_seconds"] = round(time.perf_counter() - started, 1)
        result["model"] = {"version": trained.model_version}
    result["runs"] = [one_backfill(sim, workers, store, args) for workers in args.workers]


if __name__ == "__main__":
    main()
