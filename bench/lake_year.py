"""A year of hourly history in the lake: what one hourly run's history reads cost as the lake ages.

    .venv/bin/python bench/lake_year.py --runs 10 100 --layout parts --label before
    .venv/bin/python bench/lake_year.py --runs 10 100 1000 8760 --label after --repeat 3

Builds synthetic history with the project's own writers and schemas (``Lake.write`` validates every row
against ``triage.lake.schemas``), run after run, then measures the reads an hourly run makes of history:
:func:`triage.tasks.audit.done_changes` (the next run's 1,000 written tickets), :func:`triage.tasks.audit.dangling_intents`,
:func:`triage.tasks.audit.owed_results`, :func:`triage.tasks.audit.own_writes` (since the next window's start),
:func:`triage.lake.runs.last_high_water_mark` and :func:`triage.lake.runs.completed_windows`. Each
measurement runs in a fresh subprocess (so its peak RSS is its own), ``--repeat`` times, first against an
empty lake (the baseline the goal is relative to: at most 2 s and 200 MB more).

Each synthetic hourly run: 2,000 tickets touched (98% created in the last week, 2% older), 1,000 field writes
(70% bulk), an ``intent`` and a ``result`` row each: 97.5% ``ok``, 1% ``failed``, 1% ``skipped``, 0.5%
``not_applied`` (re-sent and ``ok`` in the next run), one intent in 2,000 left without a result (recovered by
the next run). The first run's 3 dangling intents and 3 owed writes are never resolved: the reads must find
them however old. Five ``runs`` rows a run (one file each, as ``record_stage`` writes them).

Layouts: ``parts`` writes a run's audit as the push stage does, an intent part and a result part per batch of
30 writes (66 files a run), and never compacts: the lake as it was before compaction existed. ``compacted``
writes a run's audit as 2 parts and runs :func:`triage.tasks.compact.compact_all` at the end of every
simulated day (as the nightly flow's compaction and push's own do); the measured run then meets what a real
run meets. Results: bench/results/<label>.json, merged with earlier labels into lake_year.json/.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.lake import Lake  # noqa: E402
from triage.lake.schemas import schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
START = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
TICKETS_PER_RUN = 2000
WRITES_PER_RUN = 1000
NEW_TICKETS_PER_HOUR = 500
BATCH = 30
FIELDS = np.array(["group", "priority", "type"])
READS = (
    "done_changes",
    "dangling_intents",
    "owed_results",
    "own_writes",
    "last_high_water_mark",
    "completed_windows",
)


def run_id(hour: int) -> str:
    return f"run-{hour:05d}"


def window_end(hour: int) -> datetime:
    return START + (hour + 1) * HOUR


def touched(hour: int) -> np.ndarray:
    """The ticket ids run ``hour`` reads: mostly created in the last week, some older (reopened)."""
    rng = np.random.default_rng(hour)
    top = NEW_TICKETS_PER_HOUR * (hour + 1) + 5000
    recent = rng.integers(max(1, top - 7 * 24 * NEW_TICKETS_PER_HOUR), top, TICKETS_PER_RUN * 49 // 50)
    old = rng.integers(1, top, TICKETS_PER_RUN // 50)
    return np.unique(np.concatenate([recent, old]))


def _ts(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC"))


def audit_rows(
    rid: str,
    write_ids: list[str],
    tickets: np.ndarray,
    fields: np.ndarray,
    labels: np.ndarray,
    *,
    phase: str,
    status: np.ndarray | str,
    reason: np.ndarray | None,
    sent: np.ndarray,
    bulk: np.ndarray,
) -> pa.Table:
    """Audit rows of one schema-conform batch (``sent`` in epoch microseconds)."""
    n = len(tickets)
    result = phase == "result"
    completed = sent + 500_000
    status_arr = np.full(n, status) if isinstance(status, str) else status
    ok = status_arr == "ok"
    columns: dict[str, Any] = {
        "run_id": pa.array([rid] * n),
        "decision_run_id": pa.array([rid] * n),
        "write_id": pa.array(write_ids),
        "phase": pa.array([phase] * n),
        "ticket_id": pa.array(tickets, pa.int64()),
        "field": pa.array(fields),
        "label": pa.array(labels),
        "method": pa.array(np.where(bulk, "bulk_update", "update")),
        "status": pa.array(status_arr),
        "reason_code": pa.array(reason) if reason is not None else pa.nulls(n, pa.string()),
        "http_status": pa.array(np.where(ok, 200, 400), pa.int32()) if result else pa.nulls(n, pa.int32()),
        "request_id": pa.array([f"req-{w}" for w in write_ids]) if result else pa.nulls(n, pa.string()),
        "job_id": pa.nulls(n, pa.string()),
        "error": pa.nulls(n, pa.string()),
        "snapshot_updated_at": _ts(sent - 600_000_000),
        "ticket_updated_at": pa.array(
            np.where(ok & ~bulk, completed, 0).astype("datetime64[us]"), mask=~(ok & ~bulk)
        ).cast(pa.timestamp("us", tz="UTC"))
        if result
        else pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "sent_at": _ts(sent),
        "completed_at": _ts(completed) if result else pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "model_version": pa.array(["v1"] * n),
    }
    return pa.table(columns, schema=schema("audit"))


class History:
    """Writes synthetic hourly runs, one after another, into a lake."""

    def __init__(self, lake: Lake, *, layout: str) -> None:
        self.lake, self.layout = lake, layout
        self.hour = 0
        self.carry: list[tuple[int, str, str, bool]] = []  # owed writes to re-send next run
        self.dangling: list[tuple[str, int, str, str, bool]] = []  # intents to recover next run

    def write_run(self) -> None:
        hour, lake = self.hour, self.lake
        rid, end = run_id(hour), window_end(hour)
        rng = np.random.default_rng(1_000_000 + hour)
        ids = rng.choice(touched(hour), WRITES_PER_RUN, replace=False)
        fields = rng.choice(FIELDS, WRITES_PER_RUN)
        labels = np.array([f"L{i}" for i in rng.integers(0, 8, WRITES_PER_RUN)])
        bulk = rng.random(WRITES_PER_RUN) < 0.7
        base = int((end + timedelta(minutes=5)).timestamp() * 1e6)
        sent = base + np.arange(WRITES_PER_RUN) * 100_000
        draw = rng.random(WRITES_PER_RUN)
        status = np.select(
            [draw < 0.975, draw < 0.985, draw < 0.995], ["ok", "failed", "skipped"], "not_applied"
        )
        reason = np.select(
            [status == "failed", status == "skipped", status == "not_applied"],
            ["ValidationError", "agent_changed", "not_sent"],
            np.asarray(None),  # what np.select makes of a bare None, which numpy's stubs do not take
        ).astype(object)
        reason[status == "ok"] = None
        write_ids = [f"{rid}-w{i:04d}" for i in range(WRITES_PER_RUN)]
        answered = rng.random(WRITES_PER_RUN) >= 1 / 2000
        if hour == 0:
            answered[:3] = False
        parts: list[tuple[str, pa.Table]] = []
        if self.carry or self.dangling:  # the previous run's owed and cut-off writes, first
            parts += self._settle_previous(rid, base - 60_000_000)
        bounds = range(0, WRITES_PER_RUN, BATCH) if self.layout == "parts" else [0]
        step = BATCH if self.layout == "parts" else WRITES_PER_RUN
        for lo in bounds:
            sl = slice(lo, lo + step)
            args = (ids[sl], fields[sl], labels[sl])
            kw = {"sent": sent[sl], "bulk": bulk[sl]}
            parts.append(
                (
                    "intent",
                    audit_rows(
                        rid, write_ids[sl], *args, phase="intent", status="pending", reason=None, **kw
                    ),
                )
            )
            keep = answered[sl]
            parts.append(
                (
                    "result",
                    audit_rows(
                        rid,
                        [w for w, k in zip(write_ids[sl], keep, strict=True) if k],
                        *(a[keep] for a in args),
                        phase="result",
                        status=status[sl][keep],
                        reason=reason[sl][keep],
                        sent=sent[sl][keep],
                        bulk=bulk[sl][keep],
                    ),
                )
            )
        for i, (phase, table) in enumerate(parts):
            lake.write("audit", table, date=end, run_id=rid, name=f"{phase}-{i:03d}")
        self.carry = (
            [
                (int(ids[i]), str(fields[i]), str(labels[i]), bool(bulk[i]))
                for i in np.flatnonzero((status == "not_applied") & answered)
            ]
            if hour
            else []
        )
        self.dangling = (
            [
                (write_ids[i], int(ids[i]), str(fields[i]), str(labels[i]), bool(bulk[i]))
                for i in np.flatnonzero(~answered)
            ]
            if hour
            else []
        )
        self._runs_rows(rid, end)
        self.hour += 1

    def _settle_previous(self, rid: str, at: int) -> list[tuple[str, pa.Table]]:
        parts = []
        if self.dangling:
            cut, t, f, lab, b = (np.array(x) for x in zip(*self.dangling, strict=True))
            n = len(cut)
            parts.append(
                (
                    "result",
                    audit_rows(
                        rid,
                        list(cut),
                        t,
                        f,
                        lab,
                        phase="result",
                        status="ok",
                        reason=np.array(["confirmed_on_reread"] * n, dtype=object),
                        sent=np.full(n, at),
                        bulk=b,
                    ),
                )
            )
        if self.carry:
            t, f, lab, b = (np.array(x) for x in zip(*self.carry, strict=True))
            n = len(t)
            w = [f"{rid}-owed{i}" for i in range(n)]
            sent = np.full(n, at + 1_000_000)
            parts.append(
                (
                    "intent",
                    audit_rows(
                        rid, w, t, f, lab, phase="intent", status="pending", reason=None, sent=sent, bulk=b
                    ),
                )
            )
            parts.append(
                (
                    "result",
                    audit_rows(
                        rid, w, t, f, lab, phase="result", status="ok", reason=None, sent=sent, bulk=b
                    ),
                )
            )
        return parts

    def _runs_rows(self, rid: str, end: datetime) -> None:
        for i, stage in enumerate(("extract", "predict", "decide", "push", "run")):
            started = end + timedelta(minutes=1 + i)
            row = {
                "run_id": rid,
                "flow": "triage",
                "stage": stage,
                "status": "ok",
                "window_start": end - HOUR - timedelta(minutes=2),
                "window_end": end,
                "window_source": "watermark",
                "high_water_mark": end - timedelta(seconds=30),
                "mode": "apply",
                "model_version": "v1",
                "rows_in": TICKETS_PER_RUN,
                "rows_out": WRITES_PER_RUN,
                "counts": None,
                "message": None,
                "parent_run_id": None,
                "attempt": 1,
                "started_at": started,
                "finished_at": started + timedelta(seconds=30),
            }
            self.lake.write("runs", [row], date=end, run_id=rid, name=f"{stage}-{i}")


def build(lake: Lake, history: History, runs: int) -> float:
    """Write runs up to ``runs`` (compacting at each day's end in the compacted layout); seconds taken."""
    started = time.perf_counter()
    while history.hour < runs:
        history.write_run()
        if history.layout == "compacted" and (history.hour % 24 == 0 or history.hour == runs):
            from triage.tasks.compact import compact_all  # the lake before compaction existed runs without it

            compact_all(lake, settled_before=datetime.now(UTC))
    return time.perf_counter() - started


def measure(path: str, hour: int) -> dict[str, Any]:
    """One hourly run's history reads against the lake at ``path`` (run in a fresh process)."""
    from triage.lake.runs import completed_windows, last_high_water_mark
    from triage.tasks.audit import dangling_intents, done_changes, owed_results, own_writes

    lake = Lake(path)
    ids = list(np.random.default_rng(1_000_000 + hour).choice(touched(hour), WRITES_PER_RUN, replace=False))
    since = window_end(hour) - HOUR - timedelta(minutes=2)
    calls: dict[str, Callable[[], int | str]] = {
        "done_changes": lambda: len(done_changes(lake, ids)),
        "dangling_intents": lambda: len(dangling_intents(lake)),
        "owed_results": lambda: len(owed_results(lake, "write")),
        # the synthetic history has a single clock: the ticket system's is not ahead of ours
        "own_writes": lambda: sum(
            len(v)
            for v in own_writes(
                lake, since=since, tolerance=timedelta(seconds=5), clock_offset=lambda: timedelta(0)
            ).exact.values()
        ),
        "last_high_water_mark": lambda: str(last_high_water_mark(lake)),
        "completed_windows": lambda: len(completed_windows(lake, flow="backfill")),
    }
    out: dict[str, Any] = {}
    for name in READS:
        t0 = time.perf_counter()
        answer = calls[name]()
        seconds = round(time.perf_counter() - t0, 4)
        out[name] = {"seconds": seconds, "answer": answer, "peak_rss_mb_after": peak_rss_mb()}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``). Not ``ru_maxrss``: Linux keeps
    that across ``exec``, so a child reports the parent's size at ``fork`` (1.8 GB after a year's build)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_in_child(path: str, hour: int, repeat: int) -> list[dict[str, Any]]:
    results = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", path, "--hour", str(hour)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def files_per_day(lake: Lake) -> dict[str, float]:
    """Visible Parquet files per table and date partition (mean over partitions)."""
    out = {}
    for table in ("audit", "runs"):
        root = Path(lake.root) / table
        days = [d for d in root.glob("date=*") if d.is_dir()]
        files = sum(1 for d in days for f in d.rglob("*.parquet") if not f.name.startswith("."))
        out[table] = round(files / len(days), 1) if days else 0.0
    return out


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "note": "shared machine: other workers' tests and builds ran at the same time (not idle)",
    }


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds per read, the answers, and the median peak RSS."""
    out: dict[str, Any] = {}
    for name in READS:
        secs = sorted(s[name]["seconds"] for s in samples)
        out[name] = {"seconds": secs[len(secs) // 2], "all": secs, "answer": samples[0][name]["answer"]}
        if "peak_rss_mb_after" in samples[0][name]:
            out[name]["peak_rss_mb_after"] = [sample[name]["peak_rss_mb_after"] for sample in samples]
    out["total_seconds"] = round(sum(out[n]["seconds"] for n in READS), 3)
    rss = sorted(s["peak_rss_mb"] for s in samples)
    out["peak_rss_mb"] = rss[len(rss) // 2]
    return out


def markdown(record: dict[str, Any]) -> str:
    """One label's sizes as a Markdown table (seconds are medians of ``--repeat``)."""
    head = ["hourly runs in the lake", "files a day (audit, runs)", *READS, "total", "peak RSS", "over empty"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    empty = record["empty"]
    rows = [
        {"runs": 0, "files_per_day": {"audit": 0, "runs": 0}, **empty, "over_empty": None},
        *record["sizes"],
    ]
    for r in rows:
        over = r["over_empty"]
        cells = [
            f"{r['runs']:,}" if r["runs"] else "0 (empty lake)",
            f"{r['files_per_day']['audit']:g}, {r['files_per_day']['runs']:g}",
            *(f"{r[n]['seconds']:.3f} s" for n in READS),
            f"**{r['total_seconds']:.2f} s**",
            f"{r['peak_rss_mb']:,.0f} MB",
            f"+{over['seconds']:.2f} s, +{over['peak_rss_mb']:,.0f} MB" if over else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sizes_of(runs: list[int]) -> Iterator[int]:
    yield from sorted(set(runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--layout", choices=["parts", "compacted"], default="compacted")
    parser.add_argument("--label", default="after", help="name of this measurement in lake_year.json")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per size (median recorded)")
    parser.add_argument(
        "--workdir", default=None, help="where to build the lake (default: a temporary folder)"
    )
    parser.add_argument("--table", action="store_true", help="print lake_year.json's results as Markdown")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--hour", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.hour)))
        return
    if args.table:
        for label, r in json.loads((RESULTS / "lake_year.json").read_text()).items():
            print(f"### {label}\n\n`{r['command']}` ({r['layout']} layout)\n\n{markdown(r)}\n")
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lake_year-"))
    shutil.rmtree(work / "lake", ignore_errors=True)
    lake = Lake(work / "lake")
    record: dict[str, Any] = {
        "command": "python bench/lake_year.py " + " ".join(sys.argv[1:]),
        "layout": args.layout,
        "repeat": args.repeat,
        "machine_before": machine(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    empty = work / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    record["empty"] = summarise(measure_in_child(str(empty), 0, args.repeat))
    print("empty lake:", json.dumps(record["empty"]), flush=True)
    history = History(lake, layout=args.layout)
    record["sizes"] = []
    for runs in sizes_of(args.runs):
        built = build(lake, history, runs)
        entry = {"runs": runs, "build_seconds": round(built, 1), "files_per_day": files_per_day(lake)}
        entry.update(summarise(measure_in_child(str(lake.root), runs, args.repeat)))
        entry["over_empty"] = {
            "seconds": round(entry["total_seconds"] - record["empty"]["total_seconds"], 3),
            "peak_rss_mb": round(entry["peak_rss_mb"] - record["empty"]["peak_rss_mb"], 1),
        }
        record["sizes"].append(entry)
        print(json.dumps(entry), flush=True)
    record["machine_after"] = machine()
    RESULTS.mkdir(exist_ok=True)
    merged_path = RESULTS / "lake_year.json"
    merged = json.loads(merged_path.read_text()) if merged_path.exists() else {}
    merged[args.label] = record
    merged_path.write_text(json.dumps(merged, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
