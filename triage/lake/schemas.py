"""The Arrow schema of every lake table, each column documented for analysts.

This module is the one home of the lake's columns: writers validate against these schemas, and the
docs' table reference (docs/lake.md) is generated from the ``doc`` metadata (:func:`describe`).

Every table is hive-partitioned ``<table>/date=YYYY-MM-DD/run=<run_id>/*.parquet``: ``date`` is the UTC
date of the run's window end and ``run`` repeats ``run_id`` (which every row also carries).
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
TOP_K = pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))


def _f(name: str, type_: pa.DataType, doc: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


def _run_id() -> pa.Field:
    return _f("run_id", pa.string(), "The run that wrote the row (the Prefect flow-run id).", nullable=False)


TICKETS = pa.schema(
    [
        _run_id(),
        _f(
            "purpose",
            pa.string(),
            "`triage` (tickets to classify) or `history` (resolved tickets read as training labels).",
            nullable=False,
        ),
        _f("ticket_id", pa.int64(), "Freshdesk ticket id.", nullable=False),
        _f("subject", pa.string(), "Subject as plain text."),
        _f("description", pa.string(), "Description as plain text."),
        _f("status", pa.int32(), "Native status (2 open, 3 pending, 4 resolved, 5 closed, custom ids)."),
        _f("priority", pa.int32(), "Native priority (1 Low, 2 Medium, 3 High, 4 Urgent)."),
        _f("group_id", pa.int64(), "Native group id (null: no group)."),
        _f("type", pa.string(), "Ticket type (null: none)."),
        _f("responder_id", pa.int64(), "Assigned agent id."),
        _f("source", pa.int32(), "Native source (1 email, 2 portal, 3 phone, ...)."),
        _f("tags", pa.list_(pa.string()), "Tags at extraction time."),
        _f("custom_fields", pa.string(), "Custom fields at extraction time, as a JSON object."),
        _f("created_at", TS, "When the ticket was created (UTC)."),
        _f("updated_at", TS, "The ticket's `updated_at` when extracted: the snapshot version (UTC)."),
        _f("extracted_at", TS, "When triage read the ticket (UTC).", nullable=False),
        _f(
            "skip_reason",
            pa.string(),
            "Null when the ticket went on to prediction; else why not: `own_write` (its last change was "
            "triage's own write), `resolved` (a triage run met a resolved/closed ticket), `not_resolved` "
            "(a history read met an open ticket), `spam`, `deleted`.",
        ),
    ]
)

PREDICTIONS = pa.schema(
    [
        _run_id(),
        _f("ticket_id", pa.int64(), "Freshdesk ticket id.", nullable=False),
        _f("field", pa.string(), "Triaged field (`group`, `priority`, `type`, `cf_*`).", nullable=False),
        _f("label", pa.string(), "The model's top label."),
        _f("probability", pa.float64(), "The model's probability of `label` (0..1)."),
        _f("top_k", TOP_K, "The best labels with their probabilities, best first."),
        _f("model_name", pa.string(), "Model name (base encoder and head)."),
        _f("model_version", pa.string(), "Model version id in the model store."),
        _f("text_hash", pa.string(), "sha256 of the exact text the model saw."),
        _f("predicted_at", TS, "When the prediction was made (UTC).", nullable=False),
    ]
)

DECISIONS = pa.schema(
    [
        _run_id(),
        _f("ticket_id", pa.int64(), "Freshdesk ticket id.", nullable=False),
        _f("field", pa.string(), "Triaged field.", nullable=False),
        _f(
            "mode",
            pa.string(),
            "Run mode: `shadow` (nothing sent), `suggest` (private note), `apply`.",
            nullable=False,
        ),
        _f(
            "action",
            pa.string(),
            "What the rules decided, whatever the mode: `apply` (write `label`), `suggest` (mention it "
            "in a note), `skip` (neither). In shadow mode this is what *would* have happened.",
            nullable=False,
        ),
        _f("label", pa.string(), "The value to write or suggest (Freshdesk's spelling); null on skip."),
        _f("predicted_label", pa.string(), "The model's top label."),
        _f("probability", pa.float64(), "The model's probability of `predicted_label`."),
        _f("apply_threshold", pa.float64(), "Threshold to apply used for this field (null: none reachable)."),
        _f("suggest_threshold", pa.float64(), "Threshold to suggest used for this field."),
        _f("current_label", pa.string(), "The ticket's value when extracted, as a label (null: empty)."),
        _f("reason_code", pa.string(), "Why (machine-readable), see the reason codes table.", nullable=False),
        _f("reason", pa.string(), "Why, in words.", nullable=False),
        _f("model_version", pa.string(), "Model version that made the prediction."),
        _f("snapshot_updated_at", TS, "The ticket's `updated_at` the decision was made on."),
        _f("decided_at", TS, "When the decision was made (UTC).", nullable=False),
    ]
)

AUDIT = pa.schema(
    [
        _run_id(),
        _f("decision_run_id", pa.string(), "The run whose decision this write carries out."),
        _f(
            "write_id",
            pa.string(),
            "One id per request sent; an intent and its result share it.",
            nullable=False,
        ),
        _f(
            "phase",
            pa.string(),
            "`intent` (written before sending) or `result` (after; every intent gets one, on crash "
            "recovery by re-reading the ticket).",
            nullable=False,
        ),
        _f("ticket_id", pa.int64(), "Freshdesk ticket id.", nullable=False),
        _f("field", pa.string(), "Field written (or suggested, for notes).", nullable=False),
        _f("label", pa.string(), "Value written or suggested."),
        _f("method", pa.string(), "`update` (PUT one ticket), `bulk_update` or `note`.", nullable=False),
        _f(
            "status",
            pa.string(),
            "`pending` (intent), `ok` (written), `failed` (the ticket system refused), `skipped` (not "
            "sent, see reason_code), `not_applied` (cut off and a re-read found the value absent, or "
            "never sent because push stopped: owed, the next push sends it), `unknown` (a cut-off note "
            "on a ticket system whose notes cannot be listed: counted as sent, never repeated).",
            nullable=False,
        ),
        _f(
            "reason_code",
            pa.string(),
            "Why a write failed or was skipped, or how a result was found: see the audit reason codes.",
        ),
        _f("http_status", pa.int32(), "HTTP status of the request (null when nothing was sent)."),
        _f("request_id", pa.string(), "Freshdesk's X-Request-Id of the request, for support."),
        _f("job_id", pa.string(), "Freshdesk bulk-update job id."),
        _f("error", pa.string(), "Error message from the ticket system (never credentials)."),
        _f("snapshot_updated_at", TS, "The ticket's `updated_at` the decision was made on."),
        _f("ticket_updated_at", TS, "The ticket's `updated_at` after our write, when Freshdesk returned it."),
        _f("sent_at", TS, "When the request was about to be sent (UTC)."),
        _f("completed_at", TS, "When the result was known (UTC); null on intents."),
        _f("model_version", pa.string(), "Model version behind the decision."),
    ]
)

RUNS = pa.schema(
    [
        _run_id(),
        _f("flow", pa.string(), "`triage`, `train`, `backfill` or `nightly`.", nullable=False),
        _f(
            "stage",
            pa.string(),
            "`extract`, `predict`, `decide`, `push`, `train`, `outcomes`, or `run` (the whole run).",
            nullable=False,
        ),
        _f("status", pa.string(), "`ok` or `failed`.", nullable=False),
        _f("window_start", TS, "Start of the window read (inclusive, `updated_at >=`)."),
        _f("window_end", TS, "End of the window read (exclusive)."),
        _f(
            "window_source",
            pa.string(),
            "`watermark` (continues the last completed run), `initial` (first run), `explicit` (given).",
        ),
        _f(
            "high_water_mark",
            TS,
            "Everything updated before this was read: the newest `updated_at` read (Freshdesk's clock), "
            "or the previous mark when nothing newer was. The next incremental window starts at the latest "
            "completed incremental run's mark minus `pipeline.overlap_seconds`.",
        ),
        _f("mode", pa.string(), "Run mode (shadow, suggest, apply)."),
        _f("model_version", pa.string(), "Model version used or produced."),
        _f("rows_in", pa.int64(), "Rows the stage read."),
        _f("rows_out", pa.int64(), "Rows the stage wrote."),
        _f("counts", pa.string(), "Counts by outcome (JSON), e.g. decisions per field and action."),
        _f("message", pa.string(), "Error message of a failed stage, or a note."),
        _f("parent_run_id", pa.string(), "The backfill run a batch belongs to."),
        _f(
            "attempt",
            pa.int32(),
            "Attempt of the flow run that wrote the row: 1, then 2 and up after a retry (from the Prefect "
            "UI, or a crash's rerun). A stage reused as `Cached` writes no row in later attempts.",
        ),
        _f("started_at", TS, "Stage start (UTC).", nullable=False),
        _f("finished_at", TS, "Stage end (UTC).", nullable=False),
    ]
)

QUARANTINE = pa.schema(
    [
        _run_id(),
        _f("stage", pa.string(), "Stage that met the row.", nullable=False),
        _f("ticket_id", pa.int64(), "Ticket id, when it could be read."),
        _f("error", pa.string(), "Why the row could not be used.", nullable=False),
        _f("raw_json", pa.string(), "The raw row exactly as received, as JSON.", nullable=False),
        _f("quarantined_at", TS, "When (UTC).", nullable=False),
    ]
)

OUTCOMES = pa.schema(
    [
        _run_id(),
        _f("ticket_id", pa.int64(), "Freshdesk ticket id (now resolved or closed).", nullable=False),
        _f("field", pa.string(), "Triaged field.", nullable=False),
        _f("predicted_label", pa.string(), "The latest prediction before the ticket was resolved."),
        _f("probability", pa.float64(), "Its probability."),
        _f("action", pa.string(), "What the rules decided for it (apply, suggest, skip)."),
        _f("written", pa.bool_(), "Whether triage wrote a value to this field (audit status ok)."),
        _f("written_label", pa.string(), "The value triage wrote, if any."),
        _f("final_label", pa.string(), "The value agents finally left on the resolved ticket."),
        _f("correct", pa.bool_(), "`predicted_label == final_label`."),
        _f("overridden", pa.bool_(), "Triage wrote a value and agents changed it."),
        _f("prediction_run_id", pa.string(), "The run that made the prediction."),
        _f("model_version", pa.string(), "Model version of the prediction."),
        _f("resolved_updated_at", TS, "`updated_at` of the resolved ticket as read."),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "tickets": TICKETS,
    "predictions": PREDICTIONS,
    "decisions": DECISIONS,
    "audit": AUDIT,
    "runs": RUNS,
    "quarantine": QUARANTINE,
    "outcomes": OUTCOMES,
}

#: One line per table, for ``triage sql --list``.
TABLE_DOCS: dict[str, str] = {
    "tickets": "Ticket snapshots as each run read them (to triage, or resolved history to train on).",
    "predictions": "The model's prediction per ticket and field, per run.",
    "decisions": "What the rules decided per ticket and field, per run, whatever the mode.",
    "audit": "Every request to the ticket system: an intent before, results after (all tries: see latest_changes).",
    "runs": "One row per stage attempt, and a `run` row when an attempt ends (see latest_runs).",
    "quarantine": "Rows that could not be used, with the raw JSON.",
    "outcomes": "Predictions beside the values agents left on resolved tickets, per night (see latest_outcomes).",
}


def schema(table: str) -> pa.Schema:
    """The schema of ``table``; :class:`KeyError` naming the known tables otherwise."""
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown lake table {table!r} (known: {', '.join(TABLES)})") from None


def describe(table: str) -> list[tuple[str, str, str]]:
    """(column, Arrow type, description) for each column of ``table``, for documentation."""
    return [(f.name, str(f.type), (f.metadata or {}).get(b"doc", b"").decode()) for f in schema(table)]


def reference_markdown() -> str:
    """The column reference of every table, as Markdown (docs/lake.md's column reference is this text)."""
    parts = []
    for table in TABLES:
        parts += [f"#### `{table}`", "", "| column | type | meaning |", "|---|---|---|"]
        parts += [f"| `{name}` | {type_} | {doc} |" for name, type_, doc in describe(table)]
        parts.append("")
    return "\n".join(parts)
