"""Issue 9's "every README query under 2 s on that year": docs/lake.md's ``triage-query`` blocks, timed on
a synthetic year of hourly history built directly in its compacted layout.

    .venv/bin/python bench/lake_year_queries.py --days 7 --repeat 1 --label try
    .venv/bin/python bench/lake_year_queries.py --days 365 --repeat 3
    .venv/bin/python bench/lake_year_queries.py --table     # the results' table, from the JSON

The year (8,760 hourly runs, 2,000 tickets and 1,000 writes a run) is written as compaction leaves it: one
file per table and day, ``<table>/date=D/run=compacted/<table>-<newest>-<id>.parquet``, rows conformed to the
table's schema by the lake's own :func:`triage.lake.io.conform`, sorted by the table's
:data:`triage.lake.compaction.SORT_KEYS` (the audit split by phase), in row groups of
:data:`~triage.lake.compaction.ROW_GROUP_ROWS` with statistics, zstd, the footer's ``triage.covers`` naming
the run parts it stands for. Columns are drawn with numpy a day at a time (no Python row objects). The last
day built is yesterday (UTC), so the queries about "yesterday" find a full day.

Each synthetic hourly run (window end on the hour, ``date`` = the window end's UTC date): 2,000 tickets read
(98% created in the last week, 2% older), 10% skipped (own write, resolved), so 1,800 predicted on 3 fields
(group, priority, type): 5,400 predictions and decisions; 1,000 of the group/type decisions are ``apply``
(probability above the field's threshold; priority has no reachable threshold and is never applied), about a
third ``suggest``, the rest ``below_threshold`` or ``already_set``; mode ``apply``. The 1,000 writes (70%
bulk) each get an intent and a result: 97.5% ok, 1% failed (4 in 5 retryable, 429/503, sent again and ok in
the next run; the rest 400 for good), 1% skipped, 0.5% not_applied (re-sent and ok next run), one intent in
2,000 left without a result (resolved next run by a re-read). ``runs``: 5 stage rows a run, 1% of runs fail
their push on attempt 1 and succeed on attempt 2; a nightly run a day and a train run a week. The model
version changes weekly (the train run's). ``outcomes``: a nightly run's 12,000 resolved tickets x 3 fields a
day. ``tickets`` and ``predictions`` are there at full row count (every view and query's connection lists
them) with short texts and no hashes: no query reads them.

Each query runs in a fresh Python process per repetition (``connect`` + the query + fetching every row, and
the JSON the CLI would print; the Python block as written, its ``data/lake`` a link to the built lake), its
peak RSS its own; load average before and after; EXPLAIN ANALYZE of each SQL query (what its scans read and
skipped). The audit's open-items state is written as compaction would have kept it (:func:`open_state`).
:data:`CHECKS` then compare the bounded views with the whole-history ones on the same year (each counts the
rows where they disagree). Results: bench/results/lake_year_queries.json and .md (``--label`` other than
``year`` writes ``lake_year_queries.<label>.json`` only).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.lake.compaction import NEWEST, OPEN_STATE, ROW_GROUP_ROWS, SORT_KEYS, SPLIT_BY, STAMP  # noqa: E402
from triage.lake.io import COMPACTED_RUN, COVERS_KEY, Lake, conform  # noqa: E402
from triage.lake.schemas import schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```(sql|python)\n(.*?)```", re.S)
GOAL_S = 2.0
#: A query past this many seconds is not repeated (it misses the goal by far; the run must fit in an hour).
LONG_S = 60.0
RUNS_A_DAY = 24
TICKETS_PER_RUN = 2000
PREDICTED = 1800
WRITES_PER_RUN = 1000
NEW_TICKETS_PER_HOUR = 500
RESOLVED_A_DAY = 12000
US = 1_000_000
HOUR_US = 3600 * US
FIELDS = np.array(["group", "priority", "type"])
LABELS = {
    "group": np.array(
        ["Billing", "Technical Support", "Sales", "Accounts", "Shipping", "Returns", "IT", "HR"]
    ),
    "priority": np.array(["Low", "Medium", "High", "Urgent"]),
    "type": np.array(["Question", "Incident", "Problem", "Feature Request", "Refund"]),
}
APPLY_THRESHOLD = {"group": 0.82, "priority": np.nan, "type": 0.86}
SUGGEST_THRESHOLD = {"group": 0.55, "priority": 0.6, "type": 0.58}
REASONS = {
    "confident": "probability clears the field's apply threshold",
    "suggest_band": "probability between the suggest and apply thresholds",
    "below_threshold": "probability below the suggest threshold",
    "already_set": "the field already has a value",
}
SUBJECTS = np.array(
    [
        "Invoice shows the wrong amount",
        "Cannot log in after password reset",
        "Where is my order?",
        "Bitte Rechnung erneut senden",
        "App crashes on start",
        "Refund for damaged item",
        "Add a user to our account",
        "VPN drops every hour",
    ]
)


# -- the year ----------------------------------------------------------------------------------------


def _ts(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype("datetime64[us]"), mask=mask).cast(pa.timestamp("us", tz="UTC"))


def _strs(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def model_version(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"minilm-hybrid-{year}w{week:02d}"


class Year:
    """Synthetic days, one after another (a run's retries land in the next run, maybe the next day)."""

    def __init__(self, lake: Lake, first: date, days: int) -> None:
        self.lake, self.first, self.days = lake, first, days
        self.carry: list[dict[str, Any]] = []  # audit rows owed to the next run (retries, re-reads)
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def build_day(self, d: int) -> None:
        day = self.first + timedelta(days=d)
        t0 = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * US)
        rng = np.random.default_rng(d)
        version = model_version(day)
        dec_parts, tick_parts, write_parts = [], [], []
        for k in range(RUNS_A_DAY):
            hour = d * RUNS_A_DAY + k
            end = t0 + k * HOUR_US
            top = NEW_TICKETS_PER_HOUR * (hour + 1) + 5000
            recent = top - max(1, top - 7 * 24 * NEW_TICKETS_PER_HOUR)
            ids = top - 1 - rng.choice(recent, TICKETS_PER_RUN * 49 // 50, replace=False)
            old = rng.integers(1, max(2, top - recent), TICKETS_PER_RUN - len(ids))
            ids = np.concatenate([ids, old])
            skip = np.full(TICKETS_PER_RUN, None, dtype=object)
            skip[PREDICTED:] = np.where(
                rng.random(TICKETS_PER_RUN - PREDICTED) < 0.6, "own_write", "resolved"
            )
            tick_parts.append({"hour": np.full(TICKETS_PER_RUN, hour), "ticket_id": ids, "skip": skip})
            n = PREDICTED * 3
            tickets = np.repeat(ids[:PREDICTED], 3)
            fields = np.tile(FIELDS, PREDICTED)
            prob = np.clip(rng.beta(5, 2, n), 0.2, 0.999)
            action = np.full(n, "skip", dtype=object)
            code = np.full(n, "below_threshold", dtype=object)
            applicable = np.flatnonzero(fields != "priority")
            chosen = rng.choice(applicable, WRITES_PER_RUN, replace=False)
            thr = np.where(fields == "group", APPLY_THRESHOLD["group"], APPLY_THRESHOLD["type"])
            prob[chosen] = thr[chosen] + (0.999 - thr[chosen]) * rng.random(WRITES_PER_RUN)
            action[chosen], code[chosen] = "apply", "confident"
            rest = np.setdiff1d(np.arange(n), chosen)
            draw = rng.random(len(rest))
            already = rest[draw < 0.1]
            code[already] = "already_set"
            band = rest[(draw >= 0.1) & (draw < 0.45)]
            action[band], code[band] = "suggest", "suggest_band"
            sthr = np.select([fields == "group", fields == "type"], [0.55, 0.58], 0.6)
            athr = np.where(fields == "priority", 0.999, thr)
            prob[band] = sthr[band] + (athr[band] - sthr[band]) * rng.random(len(band))
            low = rest[draw >= 0.45]
            prob[low] = np.minimum(prob[low], sthr[low] - 0.01)
            label = np.empty(n, dtype=object)
            for f, values in LABELS.items():
                mask = fields == f
                label[mask] = rng.choice(values, int(mask.sum()))
            current = np.full(n, None, dtype=object)
            current[already] = label[already]
            decided = end + 3 * 60 * US + rng.integers(0, 60 * US, n)
            dec_parts.append(
                {
                    "hour": np.full(n, hour),
                    "ticket_id": tickets,
                    "field": fields,
                    "action": action,
                    "code": code,
                    "label": label,
                    "prob": prob,
                    "current": current,
                    "decided": decided,
                    "snapshot": end - rng.integers(0, HOUR_US, n),
                }
            )
            write_parts.append(self.writes(rng, hour, end, chosen, tickets, fields, label))
        decisions, ticks, writes = _concat(dec_parts), _concat(tick_parts), _concat(write_parts)
        self.write(day, "tickets", self.tickets_table(rng, day, t0, ticks))
        self.write(day, "predictions", self.predictions_table(rng, version, decisions))
        self.write(day, "decisions", self.decisions_table(version, decisions))
        self.write(day, "audit", self.audit_table(rng, version, writes))
        self.write(day, "runs", self.runs_table(rng, d, day, t0, version))
        self.write(day, "outcomes", self.outcomes_table(rng, d, t0, version))

    def writes(self, rng, hour, end, chosen, tickets, fields, label) -> dict[str, Any]:
        """The run's 1,000 writes (intent + result each), the previous run's retries first."""
        m = WRITES_PER_RUN
        sent = end + 5 * 60 * US + np.arange(m) * 100_000
        draw = rng.random(m)
        status = np.select(
            [draw < 0.975, draw < 0.985, draw < 0.995], ["ok", "failed", "skipped"], "not_applied"
        ).astype(object)
        retryable = (status == "failed") & (rng.random(m) < 0.8)
        answered = rng.random(m) >= 1 / 2000
        bulk = rng.random(m) < 0.7
        rid = np.full(m, hour)
        row = {
            "hour": rid,
            "decision_hour": rid,
            "write_no": np.arange(m),
            "retry": np.zeros(m, bool),
            "ticket_id": tickets[chosen],
            "field": fields[chosen],
            "label": label[chosen],
            "bulk": bulk,
            "status": status,
            "retryable": retryable,
            "answered": answered,
            "sent": sent,
        }
        carried = self.carry
        owed = (status == "not_applied") | retryable | ~answered
        self.carry = [{k: v[owed] for k, v in row.items()}]
        if carried:
            prev = carried[0]
            c = len(prev["hour"])
            again = {
                **prev,
                "hour": np.full(c, hour),
                "sent": np.full(c, end + 4 * 60 * US) + np.arange(c) * 1000,
                "status": np.full(c, "ok", dtype=object),
                "retryable": np.zeros(c, bool),
                "answered": np.ones(c, bool),
                "retry": prev["answered"],  # a new request; a dangling intent gets only its re-read result
                "reread": ~prev["answered"],
            }
            row["reread"] = np.zeros(m, bool)
            return _concat([again, row])
        row["reread"] = np.zeros(m, bool)
        return row

    def audit_table(self, rng, version: str, w: dict[str, Any]) -> pa.Table:
        n = len(w["hour"])
        rid = _strs("fr-", w["hour"])
        write_id = np.where(
            w["retry"],
            np.char.add(np.char.add(w["hour"].astype(str), "-r"), w["write_no"].astype(str)),
            np.char.add(np.char.add(w["decision_hour"].astype(str), "-w"), w["write_no"].astype(str)),
        )
        status, bulk = w["status"], w["bulk"]
        ok = status == "ok"
        failed = status == "failed"
        http = np.select(
            [ok & bulk, ok, failed & w["retryable"], failed, status == "not_applied"],
            [202, 200, 429, 400, 0],
            0,
        )
        sent_none = (status == "skipped") | (status == "not_applied") | w["reread"]
        reason = np.select(
            [w["reread"], failed & w["retryable"], failed, status == "skipped", status == "not_applied"],
            ["confirmed_on_reread", "rate_limited", "validation_error", "agent_changed", "not_sent"],
            "",
        ).astype(object)
        reason[reason == ""] = None
        error = np.where(
            failed, np.where(w["retryable"], "429 Too Many Requests", "400 Validation failed"), ""
        )
        completed = w["sent"] + rng.integers(200_000, 2 * US, n)
        result = w["answered"]
        intent = ~w["reread"]  # a re-read's result has no new intent
        common = {
            "run_id": rid,
            "decision_run_id": _strs("fr-", w["decision_hour"]),
            "write_id": pa.array(write_id.astype(object)),
            "ticket_id": pa.array(w["ticket_id"], pa.int64()),
            "field": pa.array(w["field"]),
            "label": pa.array(w["label"]),
            "method": pa.array(np.where(bulk, "bulk_update", "update")),
            "snapshot_updated_at": _ts(w["sent"] - rng.integers(60 * US, HOUR_US, n)),
            "sent_at": _ts(w["sent"]),
            "model_version": pa.array(np.full(n, version)),
        }
        res = pa.table(
            {
                **common,
                "phase": pa.array(np.full(n, "result")),
                "status": pa.array(status),
                "reason_code": pa.array(reason, pa.string()),
                "http_status": pa.array(http, pa.int32(), mask=sent_none),
                "request_id": pa.array(
                    np.char.add("req-", rng.integers(10**11, 10**12, n).astype(str)).astype(object),
                    mask=sent_none,
                ),
                "error": pa.array(error, mask=~failed),
                "ticket_updated_at": _ts(completed, mask=~(ok & ~bulk)),
                "completed_at": _ts(completed),
            }
        ).filter(pa.array(result))
        ints = pa.table(
            {**common, "phase": pa.array(np.full(n, "intent")), "status": pa.array(np.full(n, "pending"))}
        )
        return pa.concat_tables([fill("audit", res), fill("audit", ints.filter(pa.array(intent)))])

    def decisions_table(self, version: str, x: dict[str, Any]) -> pa.Table:
        n = len(x["hour"])
        fields = x["field"]
        athr = np.select([fields == "group", fields == "type"], [0.82, 0.86], np.nan)
        sthr = np.select([fields == "group", fields == "type"], [0.55, 0.58], 0.6)
        return fill(
            "decisions",
            pa.table(
                {
                    "run_id": _strs("fr-", x["hour"]),
                    "ticket_id": pa.array(x["ticket_id"], pa.int64()),
                    "field": pa.array(fields),
                    "mode": pa.array(np.full(n, "apply")),
                    "action": pa.array(x["action"], pa.string()),
                    "label": pa.array(np.where(x["action"] == "skip", None, x["label"]), pa.string()),
                    "predicted_label": pa.array(x["label"], pa.string()),
                    "probability": pa.array(x["prob"]),
                    "apply_threshold": pa.array(athr, mask=np.isnan(athr)),
                    "suggest_threshold": pa.array(sthr),
                    "current_label": pa.array(x["current"], pa.string()),
                    "reason_code": pa.array(x["code"], pa.string()),
                    "reason": pa.array(np.vectorize(REASONS.get, otypes=[object])(x["code"]), pa.string()),
                    "model_version": pa.array(np.full(n, version)),
                    "snapshot_updated_at": _ts(x["snapshot"]),
                    "decided_at": _ts(x["decided"]),
                }
            ),
        )

    def predictions_table(self, rng, version: str, x: dict[str, Any]) -> pa.Table:
        n = len(x["hour"])
        second = np.round((1 - x["prob"]) * rng.random(n), 4)
        labels = pa.array(np.stack([x["label"], np.full(n, "Other", dtype=object)], 1).ravel(), pa.string())
        probs = pa.array(np.stack([x["prob"], second], 1).ravel())
        top_k = pa.ListArray.from_arrays(
            pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()),
            pa.StructArray.from_arrays([labels, probs], names=["label", "probability"]),
        )
        return fill(
            "predictions",
            pa.table(
                {
                    "run_id": _strs("fr-", x["hour"]),
                    "ticket_id": pa.array(x["ticket_id"], pa.int64()),
                    "field": pa.array(x["field"]),
                    "label": pa.array(x["label"], pa.string()),
                    "probability": pa.array(x["prob"]),
                    "top_k": top_k,
                    "model_name": pa.array(np.full(n, "minilm+hybrid")),
                    "model_version": pa.array(np.full(n, version)),
                    "predicted_at": _ts(x["decided"] - 60 * US),
                }
            ),
        )

    def tickets_table(self, rng, day: date, t0: int, x: dict[str, Any]) -> pa.Table:
        n = len(x["hour"])
        end = t0 + (x["hour"] % RUNS_A_DAY) * HOUR_US
        created = end - rng.integers(HOUR_US, 7 * 24 * HOUR_US, n)
        return fill(
            "tickets",
            pa.table(
                {
                    "run_id": _strs("fr-", x["hour"]),
                    "purpose": pa.array(np.full(n, "triage")),
                    "ticket_id": pa.array(x["ticket_id"], pa.int64()),
                    "subject": pa.array(rng.choice(SUBJECTS, n)),
                    "description": pa.array(rng.choice(SUBJECTS, n)),
                    "status": pa.array(rng.choice([2, 3], n), pa.int32()),
                    "priority": pa.array(rng.integers(1, 5, n), pa.int32()),
                    "group_id": pa.array(rng.integers(1, 9, n), pa.int64(), mask=rng.random(n) < 0.6),
                    "responder_id": pa.array(rng.integers(100, 160, n), pa.int64()),
                    "source": pa.array(rng.choice([1, 2, 3], n), pa.int32()),
                    "custom_fields": pa.array(np.full(n, "{}")),
                    "created_at": _ts(created),
                    "updated_at": _ts(end - rng.integers(0, HOUR_US, n)),
                    "extracted_at": _ts(end + 60 * US + rng.integers(0, 60 * US, n)),
                    "skip_reason": pa.array(x["skip"], pa.string()),
                }
            ),
        )

    def runs_table(self, rng, d: int, day: date, t0: int, version: str) -> pa.Table:
        rows: dict[str, list[Any]] = {
            k: [] for k in ("run_id", "flow", "stage", "status", "attempt", "start")
        }
        rows |= {"window_start": [], "window_end": [], "message": [], "model_version": []}

        def add(rid, flow, stage, status, attempt, start, ws=None, we=None, message=None):
            for k, v in zip(
                (
                    "run_id",
                    "flow",
                    "stage",
                    "status",
                    "attempt",
                    "start",
                    "window_start",
                    "window_end",
                    "message",
                ),
                (rid, flow, stage, status, attempt, start, ws, we, message),
                strict=True,
            ):
                rows[k].append(v)
            rows["model_version"].append(version)

        for k in range(RUNS_A_DAY):
            hour = d * RUNS_A_DAY + k
            rid, end = f"fr-{hour}", t0 + k * HOUR_US
            win = (end - HOUR_US - 120 * US, end)
            failing = rng.random() < 0.01
            for i, stage in enumerate(("extract", "predict", "decide", "push", "run")):
                bad = failing and stage in ("push", "run")
                add(rid, "triage", stage, "failed" if bad else "ok", 1, end + (1 + i) * 60 * US, *win,
                    "ReadTimeout: Freshdesk did not answer" if bad else None)  # fmt: skip
            if failing:
                for i, stage in enumerate(("push", "run")):
                    add(rid, "triage", stage, "ok", 2, end + (20 + i) * 60 * US, *win)
        nightly = t0 + 2 * HOUR_US + 30 * 60 * US
        for i, stage in enumerate(("outcomes", "compact", "run")):
            add(f"nightly-{d}", "nightly", stage, "ok", 1, nightly + i * 60 * US)
        if day.weekday() == 6:
            for i, stage in enumerate(("train", "run")):
                add(f"train-{d}", "train", stage, "ok", 1, t0 + 3 * HOUR_US + i * 40 * 60 * US)
        n = len(rows["run_id"])
        start = np.array(rows["start"])
        flow = np.array(rows["flow"])
        triage = flow == "triage"
        ws = np.array([v or 0 for v in rows["window_start"]])
        we = np.array([v or 0 for v in rows["window_end"]])
        return fill(
            "runs",
            pa.table(
                {
                    "run_id": pa.array(rows["run_id"]),
                    "flow": pa.array(flow),
                    "stage": pa.array(rows["stage"]),
                    "status": pa.array(rows["status"]),
                    "window_start": _ts(ws, mask=~triage),
                    "window_end": _ts(we, mask=~triage),
                    "window_source": pa.array(np.where(triage, "watermark", ""), mask=~triage),
                    "high_water_mark": _ts(we - 30 * US, mask=~triage),
                    "mode": pa.array(np.where(triage, "apply", ""), mask=~triage),
                    "model_version": pa.array(rows["model_version"]),
                    "rows_in": pa.array(np.full(n, TICKETS_PER_RUN), pa.int64()),
                    "rows_out": pa.array(np.full(n, WRITES_PER_RUN), pa.int64()),
                    "counts": pa.array(np.full(n, '{"ok": 975}')),
                    "message": pa.array(rows["message"], pa.string()),
                    "attempt": pa.array(rows["attempt"], pa.int32()),
                    "started_at": _ts(start),
                    "finished_at": _ts(start + rng.integers(5 * US, 50 * US, n)),
                }
            ),
        )

    def outcomes_table(self, rng, d: int, t0: int, version: str) -> pa.Table:
        n_t = RESOLVED_A_DAY
        top = NEW_TICKETS_PER_HOUR * (d * RUNS_A_DAY + 1) + 5000
        ids = np.unique(rng.integers(max(1, top - 14 * 24 * NEW_TICKETS_PER_HOUR), top, n_t))
        n = len(ids) * 3
        fields = np.tile(FIELDS, len(ids))
        predicted = np.empty(n, dtype=object)
        final = np.empty(n, dtype=object)
        accuracy = np.select([fields == "group", fields == "type"], [0.88, 0.87], 0.6)
        correct = rng.random(n) < accuracy
        for f, values in LABELS.items():
            mask = fields == f
            predicted[mask] = rng.choice(values, int(mask.sum()))
            final[mask] = rng.choice(values, int(mask.sum()))
        final[correct] = predicted[correct]
        correct = predicted == final
        action = np.where(
            fields == "priority", np.where(rng.random(n) < 0.5, "suggest", "skip"),
            np.select([rng.random(n) < 0.2, rng.random(n) < 0.5], ["apply", "suggest"], "skip"),
        )  # fmt: skip
        written = (action == "apply") & (rng.random(n) < 0.975)
        return fill(
            "outcomes",
            pa.table(
                {
                    "run_id": pa.array(np.full(n, f"nightly-{d}")),
                    "ticket_id": pa.array(np.repeat(ids, 3), pa.int64()),
                    "field": pa.array(fields),
                    "predicted_label": pa.array(predicted, pa.string()),
                    "probability": pa.array(np.clip(rng.beta(5, 2, n), 0.2, 0.999)),
                    "action": pa.array(action),
                    "written": pa.array(written),
                    "written_label": pa.array(predicted, pa.string(), mask=~written),
                    "final_label": pa.array(final, pa.string()),
                    "correct": pa.array(correct),
                    "overridden": pa.array(written & ~correct),
                    "prediction_run_id": _strs("fr-", rng.integers(max(0, (d - 7) * 24), d * 24 + 1, n)),
                    "model_version": pa.array(np.full(n, version)),
                    "resolved_updated_at": _ts(t0 - rng.integers(0, 24 * HOUR_US, n)),
                }
            ),
        )

    def write(self, day: date, table: str, data: pa.Table) -> None:
        """One merged file, as :func:`triage.lake.compaction._merge` leaves it (sort, split, row groups,
        footer ``triage.covers``, name ``<table>-<newest>-<id>``)."""
        data = conform(table, data)
        keys = SORT_KEYS.get(table, ("ticket_id",))
        data = data.take(pc.sort_indices(data, [(key, "ascending") for key in keys]))
        runs = sorted(set(pc.unique(data.column("run_id")).to_pylist()))
        covers = [f"date={day}/run={r}/{table}-0.parquet" for r in runs]
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), COVERS_KEY: json.dumps(covers)})
        folder = f"{self.lake.table_dir(table)}/date={day}/run={COMPACTED_RUN}"
        os.makedirs(folder, exist_ok=True)
        newest = pc.max(data.column(NEWEST[table])).as_py() if table in NEWEST else datetime.now(UTC)
        path = f"{folder}/{table}-{newest.strftime(STAMP)}-{uuid.uuid4().hex[:8]}.parquet"
        with pq.ParquetWriter(path, data.schema, compression="zstd") as writer:
            split = SPLIT_BY.get(table)
            for value in pc.unique(data.column(split)).to_pylist() if split else [None]:
                chunk = data.filter(pc.field(split) == value) if split else data
                writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
        self.counts[table] = self.counts.get(table, 0) + data.num_rows
        self.bytes[table] = self.bytes.get(table, 0) + os.path.getsize(path)


def fill(table: str, data: pa.Table) -> pa.Table:
    """``data`` with the table's columns it lacks as nulls (the schema is the lake's, whatever it holds)."""
    target = schema(table)
    for f in target:
        if f.name not in data.column_names:
            data = data.append_column(f.name, pa.nulls(data.num_rows, f.type))
    return data.select(target.names)


def build(path: Path, days: int) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days)  # the last day built is yesterday
    lake = Lake(path)
    year = Year(lake, first, days)
    started = time.perf_counter()
    for d in range(days):
        year.build_day(d)
        if d % 30 == 29 or d == days - 1:
            print(f"  day {d + 1}/{days} built, {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    files = {t: len(lake.files(t)) for t in year.counts}
    return {
        "days": days,
        "first_date": first.isoformat(),
        "last_date": (today - timedelta(days=1)).isoformat(),
        "hourly_runs": days * RUNS_A_DAY,
        "build_seconds": round(seconds, 1),
        "rows": year.counts,
        "mb": {t: round(b / 2**20, 1) for t, b in year.bytes.items()},
        "files": files,
    }


def open_state(path: Path) -> int:
    """Write the audit's open-items state (:data:`triage.lake.compaction.OPEN_STATE`) the year would have:
    its intents without a result, found once with DuckDB (compaction folds them in as it merges; the owed
    results it also keeps are read by push, by no view, and left out here). How many there are."""
    import duckdb

    lake = Lake(path)
    files = (
        "read_parquet([" + ", ".join(f"'{p}'" for p in lake.files("audit")) + "], hive_partitioning = false)"
    )
    con = duckdb.connect()
    con.execute("SET memory_limit = '6GB'")
    intents = con.sql(
        f"SELECT * FROM {files} AS i WHERE phase = 'intent' AND NOT EXISTS (SELECT 1 FROM {files} AS r "
        "WHERE r.phase = 'result' AND r.write_id = i.write_id AND r.ticket_id = i.ticket_id AND r.field = i.field)"
    ).to_arrow_table()
    target = path / OPEN_STATE
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(conform("audit", intents), target, compression="zstd")
    return intents.num_rows


def check(path: Path) -> dict[str, Any]:
    """The built lake is what compaction leaves: compacting it again merges nothing."""
    from triage.lake.compaction import compact_table
    from triage.lake.schemas import TABLES

    lake = Lake(path)
    return {t: len(compact_table(lake, t)) for t in TABLES}


# -- the queries -------------------------------------------------------------------------------------


def docs_queries() -> list[tuple[str, str, str]]:
    """(name, language, code) of each block marked ``triage-query`` in docs/*.md (as the test finds them)."""
    found = []
    for source in sorted(DOCS.glob("*.md")):
        for lang, code in BLOCK.findall(source.read_text(encoding="utf-8")):
            if "triage-query:" in code:
                match = re.search(r"triage-query: ([\w-]+)", code)
                assert match
                found.append((match.group(1), lang, code))
    return found


# -- the bounded views against the whole-audit ones: the same answers (each check counts disagreements) ------

_CHANGES_YESTERDAY = """
SELECT d.ticket_id, d.field, d.label, c.status, c.reason_code, c.http_status, c.request_id, c.completed_at
FROM decisions AS d LEFT JOIN {changes} AS c
       ON c.ticket_id = d.ticket_id AND c.field = d.field AND c.label = d.label
      AND c.kind = CASE d.mode WHEN 'suggest' THEN 'note' ELSE 'write' END
WHERE d.action = 'apply' AND d.mode <> 'shadow'
  AND d.decided_at >= current_date - 1 AND d.decided_at < current_date"""


def _differ(left: str, right: str) -> str:
    """Rows in one and not the other (as multisets), counted: 0 when the two queries agree."""
    return f"SELECT count(*) FROM ((({left}) EXCEPT ALL ({right})) UNION ALL (({right}) EXCEPT ALL ({left})))"


#: Each a count of the rows where a bounded view and its whole-history reference disagree (0: they agree).
CHECKS: dict[str, str] = {
    "changes-yesterday: changes_since vs latest_changes": _differ(
        _CHANGES_YESTERDAY.format(changes="changes_since(current_date - 1)"),
        _CHANGES_YESTERDAY.format(changes="latest_changes"),
    ),
    "failed_writes vs latest_changes' unsuccessful rows": _differ(
        "SELECT * FROM failed_writes",
        "SELECT * FROM latest_changes WHERE status IN ('failed', 'not_applied', 'unknown', 'pending')",
    ),
    "outcomes_since(30 days) vs latest_outcomes": _differ(
        "SELECT * FROM outcomes_since(current_date - 30)",
        "SELECT * FROM latest_outcomes WHERE resolved_updated_at >= current_date - 30",
    ),
}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def measure(lake_path: str, name: str, explain: bool) -> dict[str, Any]:
    """In a fresh process: one query, as ``triage sql --format json`` or the Python block runs it."""
    from triage.lake.views import connect

    if name in CHECKS:
        lang, code = "sql", CHECKS[name]
    else:
        lang, code = next((lang, code) for n, lang, code in docs_queries() if n == name)
    out: dict[str, Any] = {"rss_before_mb": peak_rss_mb()}
    t0 = time.perf_counter()
    if lang == "sql":
        con = connect(lake_path)
        out["connect_s"] = round(time.perf_counter() - t0, 4)
        if explain:
            plan = con.execute("EXPLAIN ANALYZE " + code).fetchall()
            out["plan"] = plan[0][1]
            out["seconds"] = round(time.perf_counter() - t0, 4)
            return out
        result = con.execute(code)
        columns = [d[0] for d in result.description or []]
        rows = result.fetchall()
        out["query_s"] = round(time.perf_counter() - t0 - out["connect_s"], 4)
        text = json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str)
        out["rows"], out["json_chars"] = len(rows), len(text)
        if name in CHECKS:
            out["disagreements"] = rows[0][0]
    else:
        work = Path(tempfile.mkdtemp(prefix="lyq-"))
        (work / "data").mkdir()
        (work / "data" / "lake").symlink_to(lake_path)
        os.chdir(work)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, name, "exec"), {})
        out["printed_lines"] = len(buffer.getvalue().strip().splitlines())
        shutil.rmtree(work)
    out["seconds"] = round(time.perf_counter() - t0, 4)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def in_child(lake_path: str, name: str, timeout: float, rss_limit_mb: float, explain: bool = False) -> dict:
    """Run :func:`measure` in a fresh process; kill it past ``timeout`` s or ``rss_limit_mb`` of memory."""
    args = [sys.executable, __file__, "--measure", lake_path, "--query", name] + (
        ["--explain"] if explain else []
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killed: list[str] = []
    peak = [0.0]

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) / 1024
                        peak[0] = max(peak[0], rss)
                        if rss > rss_limit_mb:
                            killed.append(f"killed at {rss:.0f} MB resident (limit {rss_limit_mb:.0f} MB)")
                            proc.kill()
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        killed.append(f"killed after {timeout:.0f} s")
    wall = round(time.perf_counter() - t0, 3)
    watcher.join()
    if killed or proc.returncode != 0:
        return {
            "error": killed[0] if killed else stderr.strip()[-600:],
            "wall_s": wall,
            "peak_rss_mb": peak[0],
        }
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = wall  # with the interpreter's start and imports
    return result


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def time_queries(lake_path: str, repeat: int, timeout: float, rss_limit_mb: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, lang, _ in docs_queries():
        before = load()
        samples = []
        for _ in range(repeat):
            sample = in_child(lake_path, name, timeout, rss_limit_mb)
            samples.append(sample)
            print(f"  {name}: {json.dumps({k: v for k, v in sample.items() if k != 'plan'})}", flush=True)
            if "error" in sample or sample["seconds"] > LONG_S:
                break  # killed, or so far over the goal that more repetitions only cost time
        secs = [s["seconds"] for s in samples if "seconds" in s]
        entry: dict[str, Any] = {
            "language": lang,
            "samples": samples,
            "load_before": before,
            "load_after": load(),
        }
        if secs:
            entry |= {
                "median_s": round(statistics.median(secs), 3),
                "min_s": min(secs),
                "max_s": max(secs),
                "peak_rss_mb": max(s["peak_rss_mb"] for s in samples if "peak_rss_mb" in s),
                "rows": samples[0].get("rows"),
            }
        entry["meets_goal"] = bool(secs) and len(secs) == len(samples) and entry["median_s"] <= GOAL_S
        if lang == "sql":  # what each scan read and skipped
            plan = in_child(lake_path, name, timeout, rss_limit_mb, explain=True)
            entry["explain_analyze"] = plan.get("plan") or plan.get("error")
        out[name] = entry
    return out


def run_checks(lake_path: str, timeout: float, rss_limit_mb: float) -> dict[str, Any]:
    """Each of :data:`CHECKS` once (they read the whole audit: slow, and not an analyst's query)."""
    out = {}
    for name in CHECKS:
        out[name] = in_child(lake_path, name, timeout, rss_limit_mb)
        print(f"  {name}: {json.dumps(out[name])}", flush=True)
    return out


def machine() -> dict[str, Any]:
    import duckdb

    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "note": "shared machine: other engineers' tests and builds ran at the same time (not idle)",
    }


def markdown_table(record: dict[str, Any]) -> str:
    """The queries' times as a Markdown table (seconds: median, min, max of the repetitions)."""
    head = [
        "query",
        "kind",
        "rows",
        "median",
        "min",
        "max",
        "reps",
        "peak RSS",
        "load before -> after",
        "< 2 s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, q in record["queries"].items():
        errors = [s["error"] for s in q["samples"] if "error" in s]
        rows = q.get("rows") or q["samples"][0].get("printed_lines", "")
        times = (
            [f"{q['median_s']:.2f} s", f"{q['min_s']:.2f} s", f"{q['max_s']:.2f} s"]
            if "median_s" in q
            else [errors[0] if errors else "-", "", ""]
        )
        rss = q.get("peak_rss_mb") or max((s.get("peak_rss_mb", 0) for s in q["samples"]), default=0)
        load_text = f"{q['load_before'][0]} -> {q['load_after'][0]}"
        meets = "**yes**" if q["meets_goal"] else "**no**"
        kind = {"sql": "SQL (`triage sql`)", "python": "Python (pandas)"}[q["language"]]
        lines.append(
            f"| `{name}` | {kind} | {rows} | "
            + " | ".join(times)
            + f" | {len(q['samples'])} | {rss:,.0f} MB | {load_text} | {meets} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="year")
    parser.add_argument("--workdir", default=None, help="where to build the lake (default: a /tmp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the built lake")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a query is killed")
    parser.add_argument("--rss-limit-mb", type=float, default=9000.0, help="memory before a query is killed")
    parser.add_argument("--table", action="store_true", help="print the results' table (from the .json)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    parser.add_argument("--explain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.query, args.explain), default=str))
        return
    suffix = "" if args.label == "year" else f".{args.label}"
    if args.table:
        print(markdown_table(json.loads((RESULTS / f"lake_year_queries{suffix}.json").read_text())))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lake_year_queries-", dir="/tmp"))
    lake_path = work / "lake"
    record: dict[str, Any] = {
        "command": "python bench/lake_year_queries.py " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_before_build": load(),
    }
    try:
        print(f"building {args.days} days in {lake_path}", flush=True)
        record["lake"] = build(lake_path, args.days)
        record["lake"]["open_intents"] = open_state(lake_path)
        record["load_after_build"] = load()
        record["compaction_rerun_merges"] = check(lake_path)
        print(json.dumps(record["lake"]), flush=True)
        record["queries"] = time_queries(str(lake_path), args.repeat, args.timeout, args.rss_limit_mb)
        record["checks"] = run_checks(str(lake_path), args.timeout, args.rss_limit_mb)
        record["load_after"] = load()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"lake_year_queries{suffix}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    for name, q in record["queries"].items():
        print(
            f"{name:32} median {q.get('median_s')} s  rss {q.get('peak_rss_mb')} MB  meets {q['meets_goal']}"
        )


if __name__ == "__main__":
    main()
