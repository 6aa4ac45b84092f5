"""Soak: a backfill of a busy helpdesk with faults and agents on, killed at random, then completed.

    .venv/bin/python bench/soak.py                                  # 50,000 tickets, 3 kills
    .venv/bin/python bench/soak.py --tickets 3000 --kills 1 --kill-window 20 60 --name soak_smoke

The project's simulator, served from this process, holds ``--tickets`` tickets: history spread over
``--history-days`` days (resolved and closed, 8% still in progress), and ``--open-share`` of them new and
untriaged, arriving over the last ``--open-days`` days, ``--preset`` of those with values their requester
or an agent already chose (a deliberate Low included). Agents edit unresolved tickets at
``--edits-per-minute`` throughout. Rate limits are generous (``--credits`` a minute), so the run is
CPU-bound. Faults strike at low seeded rates (times ``--fault-scale``) on every write path and on reads:
5xx before and after the helpdesk acted, 429s, connections dropped before and after, broken JSON on
single updates (PUT), the bulk POST, the job poll and the ticket reads.

Setup, timed apart: ``triage retrain`` trains a model from the resolved tickets of the last days (enough
for about ``--train-rows`` rows; small fast heads). Then ``triage backfill --mode apply`` runs over the
whole range in ``--batch-hours`` batches as a subprocess in its own process group; ``--kills`` runs are
SIGKILLed (the whole group) after a seeded random delay drawn from ``--kill-window`` seconds, and each
time the backfill is started again, until one run completes (a run failing on its own is rerun too).

Judged from the simulator's own change and write logs, never from the project's audit (the same
judgement as ``tests/pipeline/test_write_stateful.py``): *lost*, a value the latest apply decision on a
ticket asked for that is not on it although no person changed the field (and the ticket is not gone);
*doubled*, a field our writes changed twice, or the same value sent to the same field in two requests
the helpdesk acted on (PUTs, bulk jobs); *overwritten*, our write replacing a value a person set, or a
tag list dropping a tag. Also recorded: each backfill process's peak RSS (``wait4``) and its process
group's sampled peak (the CLI and Prefect's temporary server), time per stage from the lake's ``runs``
table, the faults that fired, the agents' edits.

Writes bench/results/<name>.json and .md (``--name soak`` by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.lake import Lake  # noqa: E402
from triage.simulator import Simulator, SimulatorConfig, run_simulator  # noqa: E402
from triage.simulator.config import RateLimits  # noqa: E402
from triage.simulator.verdict import Wanted, judge, native_value  # noqa: E402

TRIAGE = ROOT / ".venv" / "bin" / "triage"
STAGES = ("extract", "predict", "decide", "push")
#: Small hash spaces and fixed regularisation (as tests/flows/flow_config.py): heads train in seconds.
FAST_TRAINING = {"hashing": {"word_buckets": 16384, "char_buckets": 16384}, "c_dense": 1.0, "c_sparse": 1.0}
PUT, BULK, JOBS, READS = (
    {"method": "PUT"},
    {"method": "POST", "path": "/bulk_update"},
    {"method": "GET", "path": "/jobs/"},
    {"method": "GET", "path": "/tickets"},
)
#: (kind, options, rate) per write path and on reads; rates are multiplied by --fault-scale.
FAULTS: list[tuple[str, dict[str, Any], float]] = [
    ("error", {"status": 503, **PUT}, 0.01),
    ("error", {"status": 504, "after": True, **PUT}, 0.005),
    ("drop", {**PUT}, 0.005),
    ("drop", {"after": True, **PUT}, 0.005),
    ("malformed", {**PUT}, 0.005),
    ("storm", {"retry_after": 1, **PUT}, 0.005),
    # A bulk POST or job poll whose answer is lost stops push (never resent blindly; the task retry or a
    # rerun settles it by re-reading), so these stay at about 1% of bulk POSTs in all.
    ("error", {"status": 502, **BULK}, 0.003),
    ("error", {"status": 504, "after": True, **BULK}, 0.002),
    ("drop", {**BULK}, 0.002),
    ("drop", {"after": True, **BULK}, 0.003),
    ("malformed", {**BULK}, 0.002),
    ("storm", {"retry_after": 1, **BULK}, 0.01),
    ("error", {"status": 500, **JOBS}, 0.01),
    ("drop", {**JOBS}, 0.005),
    ("malformed", {**JOBS}, 0.01),
    ("error", {"status": 503, **READS}, 0.005),
    ("drop", {**READS}, 0.003),
    ("malformed", {**READS}, 0.005),
    ("storm", {"retry_after": 1, **READS}, 0.002),
]


def write_config(path: Path, sim: Simulator, work: Path, args: argparse.Namespace) -> Path:
    threshold = args.apply_threshold
    data = {
        "ticket_system": {
            "adapter": "freshdesk",
            "base_url": sim.base_url,
            "plan": "custom",
            "rate_limit_total": args.credits,
            "bulk_poll_interval_seconds": 0.2,
            "backoff_base_seconds": 0.05,
            "backoff_max_seconds": 2,
        },
        "model": {
            "store": str(work / "models"),
            "base_encoder": "minilm",
            "max_length": 128,
            "min_examples_per_class": 8,
            "train_options": FAST_TRAINING,
        },
        "fields": {
            "group": {"apply_threshold": threshold, "suggest_threshold": 0.3},
            "priority": {"apply_threshold": threshold, "suggest_threshold": 0.3, "requires": ["group"]},
            "type": {"apply_threshold": threshold, "suggest_threshold": 0.3},
        },
        "pipeline": {
            "lake": str(work / "lake"),
            "mode": "apply",
            "bulk_settle_seconds": 5,
            "lease_seconds": 15,
            "lease_wait_seconds": 60,
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


# -- processes ---------------------------------------------------------------------------------------


def group_rss_kb(pgid: int) -> int:
    """Resident memory of every process in the group ``pgid`` (kB), from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # fields: state, ppid, pgrp, ...
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024  # rss in pages
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_cli(argv: list[str], env: dict[str, str], log: Path, kill_after: float | None) -> dict[str, Any]:
    """Run a CLI command in its own process group; SIGKILL the group after ``kill_after`` seconds."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    with log.open("wb") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    peak_group, killed = 0, False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        peak_group = max(peak_group, group_rss_kb(child.pid))
        if kill_after is not None and time.monotonic() - started >= kill_after:
            os.killpg(child.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(child.pid, 0)
            killed = True
            break
        time.sleep(0.5)
    child.returncode = os.waitstatus_to_exitcode(status)
    with log.open(errors="replace") as text:
        tail = text.readlines()[-15:]
    return {
        "argv": argv[1:],
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "seconds": round(time.monotonic() - started, 1),
        "killed": killed,
        "kill_after_seconds": round(kill_after, 1) if kill_after is not None else None,
        "exit_code": child.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_group_rss_mb_sampled": round(peak_group / 1024, 1),
        "log": str(log),
        "log_tail": [line.rstrip() for line in tail] if not killed and child.returncode else [],
    }


# -- judgement, from the simulator's own logs (as tests/pipeline/test_write_stateful.py) ------------


def wanted_writes(lake: Lake, sim: Simulator) -> tuple[Wanted, Counter[str]]:
    """What the latest apply-mode decision on each ticket asked for (a newer run's replaces older ones)."""
    rows = lake.scan("decisions").to_pylist()
    latest: dict[int, tuple[datetime, str]] = {}
    for r in rows:
        if r["mode"] == "apply":
            key = (r["decided_at"], r["run_id"])
            if r["ticket_id"] not in latest or key > latest[r["ticket_id"]]:
                latest[r["ticket_id"]] = key
    wanted: Wanted = {}
    actions: Counter[str] = Counter()
    for r in rows:
        if r["mode"] != "apply" or (r["decided_at"], r["run_id"]) != latest[r["ticket_id"]]:
            continue
        actions[f"{r['field']}:{r['action']}"] += 1
        if r["action"] == "apply":
            wanted[(r["ticket_id"], r["field"])] = native_value(sim, r["field"], r["label"])
    return wanted, actions


# -- the lake's records ------------------------------------------------------------------------------


def stage_times(lake: Lake, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds per stage over all batches (ok rows; failed ones apart), and what each kill cut short."""
    rows = [r for r in lake.scan("runs").to_pylist() if r["flow"] == "backfill" and r["parent_run_id"]]
    total: dict[str, dict[str, float]] = defaultdict(lambda: {"ok": 0.0, "ok_rows": 0, "failed_rows": 0})
    for r in rows:
        seconds = (r["finished_at"] - r["started_at"]).total_seconds()
        slot = total[r["stage"]]
        if r["status"] == "ok":
            slot["ok"] += seconds
            slot["ok_rows"] += 1
        else:
            slot["failed_rows"] += 1
    by_batch: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_batch[r["run_id"]].append(r)
    for proc in processes:
        mine = {
            run_id: batch
            for run_id, batch in by_batch.items()
            if proc["started_at"] <= min(x["started_at"] for x in batch) <= proc["finished_at"]
        }
        proc["batches_completed"] = sum(
            any(x["stage"] == "run" and x["status"] == "ok" for x in batch) for batch in mine.values()
        )
        proc["failed_stage_rows"] = sorted(
            f"{x['stage']}: {(x['message'] or '')[:160]}"
            for batch in mine.values()
            for x in batch
            if x["status"] == "failed"
        )
        if proc["killed"]:
            open_batches = [b for b in mine.values() if not any(x["stage"] == "run" for x in b)]
            if open_batches:
                batch = max(open_batches, key=lambda b: min(x["started_at"] for x in b))
                done = {x["stage"] for x in batch if x["status"] == "ok"}
                cut = next((s for s in STAGES if s not in done), "push")
                proc["killed_during"] = f"{cut} of batch {batch[0]['window_start']:%Y-%m-%d}"
            else:
                proc["killed_during"] = "start-up or the first stage of a batch"
    return {
        stage: {
            "seconds": round(v["ok"], 1),
            "batches": int(v["ok_rows"]),
            "failed_rows": int(v["failed_rows"]),
        }
        for stage, v in sorted(total.items(), key=lambda kv: (*STAGES, "run").index(kv[0]))
    }


def audit_summary(lake: Lake) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for r in lake.scan("audit").to_pylist():
        if r["phase"] == "result":
            counts[f"{r['method']}:{r['status']}" + (f":{r['reason_code']}" if r["reason_code"] else "")] += 1
    return dict(sorted(counts.items()))


def fault_name(rule: dict[str, Any]) -> str:
    words = [rule["kind"], str(rule["status"]) if rule["kind"] == "error" else ""]
    words += [
        "after" if rule["after"] else "",
        rule["method"] or "",
        rule["path"] or "",
        f"at {rule['rate']:.3g}",
    ]
    return " ".join(w for w in words if w)


# -- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--open-share", type=float, default=0.1, help="share of new, untriaged tickets")
    parser.add_argument(
        "--open-days", type=float, default=30.0, help="the open tickets arrived over these days"
    )
    parser.add_argument("--history-days", type=int, default=180)
    parser.add_argument("--preset", type=float, default=0.3, help="open tickets with values already set")
    parser.add_argument("--edits-per-minute", type=float, default=60.0, help="agents' edits")
    parser.add_argument("--credits", type=int, default=50_000, help="rate limit: credits a minute")
    parser.add_argument("--fault-scale", type=float, default=1.0, help="multiplies every fault rate")
    parser.add_argument("--batch-hours", type=int, default=168)
    parser.add_argument("--train-rows", type=int, default=1500, help="about this many resolved tickets")
    parser.add_argument("--apply-threshold", type=float, default=0.5)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument(
        "--kill-window",
        type=float,
        nargs=2,
        default=(30.0, 150.0),
        metavar=("MIN", "MAX"),
        help="seconds into a run at which it is killed (uniform, seeded)",
    )
    parser.add_argument("--max-runs", type=int, default=20, help="give up after this many backfill runs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--name", default="soak", help="file name of the recorded result")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench-soak")
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "logs").mkdir(parents=True)
    rng = random.Random(args.seed)
    open_tickets = round(args.tickets * args.open_share)
    sim_config = SimulatorConfig(
        tickets=args.tickets,
        open_tickets=open_tickets,
        seed=args.seed,
        history_days=args.history_days,
        open_within_hours=args.open_days * 24,
        plan="custom",
        limits=RateLimits(total=args.credits),
        bulk_delay_seconds=0.2,
        open_preset_fraction=args.preset,
        agent_edits_per_minute=args.edits_per_minute,
    )
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
    }
    result["settings"]["out"], result["settings"]["work"] = str(args.out), str(args.work)
    seeded = time.perf_counter()
    with run_simulator(sim_config) as sim:
        result["simulator"] = {
            "seed_seconds": round(time.perf_counter() - seeded, 1),
            "tickets": args.tickets,
            "open_untriaged": open_tickets,
            "unresolved": sum(
                1
                for t in sim.store.tickets.values()
                if t.status in (2, 3, 6, 7) and not (t.spam or t.deleted)
            ),
            "preset_changes": len(sim.changes),
        }
        config = write_config(args.work / "config.yml", sim, args.work, args)
        env = {
            **os.environ,
            "FRESHDESK_API_KEY": sim.api_key,
            "PREFECT_HOME": str(args.work / "prefect"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
        env.pop("PREFECT_API_URL", None)

        history = args.tickets - open_tickets
        # History is created before the open tickets' window and mostly handled within a day or two.
        history_span = max(args.history_days - args.open_days, 1.0)
        per_day = max(history * 0.9 / history_span, 1e-9)
        days = min(
            args.history_days, math.ceil(args.open_days) + max(3, math.ceil(args.train_rows / per_day))
        )
        train = run_cli(
            [str(TRIAGE), "retrain", "--config", str(config), "--days", str(days)],
            env,
            args.work / "logs" / "train.log",
            None,
        )
        train["days"] = days
        result["train"] = train
        if train["exit_code"] != 0:
            raise SystemExit("training failed: see " + train["log"])

        for kind, options, rate in FAULTS:
            sim.faults.inject(kind, rate=min(1.0, rate * args.fault_scale), **options)
        now = datetime.now(UTC)
        start = (now - timedelta(days=args.history_days + 1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        end = (now + timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
        backfill = [
            str(TRIAGE),
            "backfill",
            "--config",
            str(config),
            "--mode",
            "apply",
            "--batch-hours",
            str(args.batch_hours),
            start.isoformat(),
            end.isoformat(),
        ]
        changes_before = len(sim.changes)
        processes: list[dict[str, Any]] = []
        soak_started = time.monotonic()
        kills_left = args.kills
        completed = False
        while len(processes) < args.max_runs:
            kill_after = rng.uniform(*args.kill_window) if kills_left > 0 else None
            proc = run_cli(
                backfill, env, args.work / "logs" / f"backfill-{len(processes) + 1}.log", kill_after
            )
            processes.append(proc)
            print(
                f"run {len(processes)}: {proc['seconds']} s, killed={proc['killed']}, exit={proc['exit_code']}",
                flush=True,
            )
            if proc["killed"]:
                kills_left -= 1
            elif proc["exit_code"] == 0:
                completed = True
                break
        soak_seconds = time.monotonic() - soak_started
        sim.agents.stop()
        time.sleep(1.0)  # bulk jobs still queued finish (bulk_delay_seconds)
        changes = sim.changes
        lake = Lake(args.work / "lake")
        wanted, actions = wanted_writes(lake, sim)
        decided = set(lake.scan("decisions", columns=["ticket_id"]).column("ticket_id").to_pylist())
        never_decided = sorted(
            tid
            for tid in sim.truth()
            if tid not in decided and not (sim.ticket(tid)["spam"] or sim.ticket(tid).get("deleted"))
        )
        found = judge(sim, wanted)
        stats = sim.stats()
        writes = sim.writes
        result["backfill"] = {
            "range": [start.isoformat(), end.isoformat()],
            "completed": completed,
            "runs": len(processes),
            "kills": sum(p["killed"] for p in processes),
            "wall_seconds": round(soak_seconds, 1),
            "processes": processes,
            "stage_seconds": stage_times(lake, processes),
        }
        result["judgement"] = {
            **{k: len(v) for k, v in found.items()},
            "examples": {k: [list(map(str, x)) for x in v[:20]] for k, v in found.items()},
            "open_tickets_never_decided": len(never_decided),
            "open_tickets_never_decided_examples": never_decided[:20],
            "tickets_with_apply_decisions": len({ticket_id for ticket_id, _ in wanted}),
            "fields_to_write": len(wanted),
            "latest_decisions": dict(sorted(actions.items())),
        }
        agent_changes = [c for c in changes[changes_before:] if c.source == "agent"]
        result["helpdesk"] = {
            "agent_edits_during_backfill": len(agent_changes),
            "tickets_edited_by_agents_during_backfill": len({c.ticket_id for c in agent_changes}),
            "our_field_changes": sum(len(c.changes) for c in changes if c.source in ("api", "bulk")),
            "tickets_changed_by_us": len({c.ticket_id for c in changes if c.source in ("api", "bulk")}),
            "put_requests": sum(1 for w in writes if w.method == "PUT"),
            "bulk_posts": sum(1 for w in writes if w.method == "POST" and w.path.endswith("/bulk_update")),
            "bulk_jobs": len(sim.store.jobs),
            "requests": stats["requests"],
            "by_status": stats["by_status"],
            "faults_fired": {fault_name(rule): rule["fired"] for rule in sim.faults.rules()},
        }
        result["audit_results"] = audit_summary(lake)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / f"{args.name}.md").write_text(render(result))
    print(render(result))


def render(r: dict[str, Any]) -> str:
    b, j, h, s = r["backfill"], r["judgement"], r["helpdesk"], r["simulator"]
    m = r["machine"]
    lines = [
        "# Soak: a backfill with faults and agents on, killed at random, then completed",
        "",
        f"- date: {r['date']}; machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, no GPU; "
        f"load average at start {m['load_average_at_start']}, at end {m['load_average_at_end']}",
        f"- command: `{r['command']}`",
        f"- helpdesk: {s['tickets']:,} tickets ({s['open_untriaged']:,} new and untriaged, {s['unresolved']:,} "
        f"unresolved in all), agents editing at {r['settings']['edits_per_minute']:g}/min, faults on every "
        f"write path and on reads (x{r['settings']['fault_scale']:g}), {r['settings']['credits']:,} credits a minute",
        f"- model: `triage retrain --days {r['train']['days']}` in {r['train']['seconds']} s (setup, apart); "
        f"apply threshold {r['settings']['apply_threshold']} for every field",
        f"- backfill: `triage backfill --mode apply --batch-hours {r['settings']['batch_hours']}` over "
        f"{b['range'][0]} .. {b['range'][1]}",
        "",
        "## Result",
        "",
        f"**{'Completed' if b['completed'] else 'NOT completed'}** after {b['runs']} runs ({b['kills']} SIGKILLed) "
        f"in {b['wall_seconds']} s. From the simulator's logs: **lost {j['lost']}, doubled {j['doubled']}, "
        f"overwritten {j['overwritten']}** ({j['fields_to_write']:,} field writes decided on "
        f"{j['tickets_with_apply_decisions']:,} tickets by the latest apply decisions). New tickets never "
        f"decided: {j['open_tickets_never_decided']} of {s['open_untriaged']:,}.",
        "",
        f"Helpdesk: {h['agent_edits_during_backfill']:,} agent edits on "
        f"{h['tickets_edited_by_agents_during_backfill']:,} tickets during the backfill; field changes by our "
        f"writes (the triaged tag included) {h['our_field_changes']:,} on {h['tickets_changed_by_us']:,} tickets; {h['put_requests']:,} PUTs, "
        f"{h['bulk_posts']:,} bulk POSTs ({h['bulk_jobs']:,} jobs); {h['requests']:,} requests, by status "
        f"{h['by_status']}.",
        "",
        "| run | seconds | killed at (s) | killed during | exit | batches completed | peak RSS (MB) | "
        "process group peak RSS, sampled (MB) |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for i, p in enumerate(b["processes"], 1):
        lines.append(
            f"| {i} | {p['seconds']} | {p['kill_after_seconds'] if p['killed'] else ''} "
            f"| {p.get('killed_during', '') if p['killed'] else ''} "
            f"| {p['exit_code']} | {p.get('batches_completed', '')} | {p['peak_rss_mb']} "
            f"| {p['peak_group_rss_mb_sampled']} |"
        )
    lines += [
        "",
        f"Training process: peak RSS {r['train']['peak_rss_mb']} MB. Bench process (simulator, agents, judgement): "
        f"peak RSS {r['bench_process_peak_rss_mb']} MB.",
        "",
        "## Time per stage (all batches of all runs, from the lake's `runs` table)",
        "",
        "| stage | seconds (ok rows) | ok rows | failed rows |",
        "|---|---:|---:|---:|",
        *[
            f"| {stage} | {v['seconds']} | {v['batches']} | {v['failed_rows']} |"
            for stage, v in b["stage_seconds"].items()
        ],
        "",
        "## Faults that fired",
        "",
        "| fault | fired |",
        "|---|---:|",
        *[f"| {name} | {n} |" for name, n in h["faults_fired"].items()],
        "",
        "## Audit results (the project's own record, for reference)",
        "",
        "| method:status:reason | rows |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in r["audit_results"].items()],
        "",
    ]
    failed = [(i, p) for i, p in enumerate(b["processes"], 1) if p["failed_stage_rows"] or p["log_tail"]]
    if failed:
        lines += ["## Failures on the way (retried or rerun)", ""]
        for i, p in failed:
            for row in p["failed_stage_rows"]:
                lines.append(f"- run {i}: {re.sub(r'[|`]', ' ', row)}")
            if p["log_tail"]:
                lines.append(f"- run {i} exited {p['exit_code']}: `{p['log_tail'][-1][:200]}`")
        lines.append("")
    if any(j[k] for k in ("lost", "doubled", "overwritten")):
        lines += ["## Examples", "", "```", json.dumps(j["examples"], indent=1), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
