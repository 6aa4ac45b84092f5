"""Read Freshdesk's bulk job status (``GET /jobs/{id}``) into per-ticket outcomes.

The job status is spelled ``IN PROGRESS`` in the docs and ``IN_PROGRESS`` in Freshdesk's code;
both, ``QUEUED`` and any other unknown value count as still running. The shape of per-ticket
results is not documented for ticket bulk updates, so ``data`` is read leniently: a list of
``{"id", "success"|"status", "message"|"errors"}`` items, or ``{"succeeded": [...], "failed": ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Freshdesk accepts at most this many ids per bulk call.
BULK_MAX_IDS = 100
TERMINAL = frozenset({"SUCCESS", "PARTIAL", "FAILED"})
_OK = frozenset({"SUCCESS", "SUCCEEDED", "OK", "DONE", "COMPLETED"})


def job_outcome(body: Any, ids: Sequence[int]) -> tuple[list[int], dict[int, str]] | None:
    """``(succeeded, failed with reasons)`` for a finished job over ``ids``; ``None`` while it runs."""
    if not isinstance(body, dict):
        return None
    status = str(body.get("status") or "").strip().upper().replace(" ", "_")
    if status not in TERMINAL:
        return None
    reported = _per_ticket(body.get("data"))
    succeeded: list[int] = []
    failed: dict[int, str] = {}
    for ticket_id in ids:
        if ticket_id in reported:
            reason = reported[ticket_id]
            if reason is None:
                succeeded.append(ticket_id)
            else:
                failed[ticket_id] = reason
        elif status == "SUCCESS":
            succeeded.append(ticket_id)
        elif status == "FAILED":
            failed[ticket_id] = "bulk job FAILED"
        else:
            failed[ticket_id] = "bulk job PARTIAL without a result for this ticket; re-read it"
    return succeeded, failed


def _per_ticket(data: Any) -> dict[int, str | None]:
    """Ticket id -> ``None`` (succeeded) or the failure reason, from whatever ``data`` holds."""
    results: dict[int, str | None] = {}
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and _is_id(item.get("id")):
                ok = item.get("success")
                if ok is None:
                    ok = str(item.get("status") or "").upper() in _OK
                reason = item.get("errors") or item.get("message") or item.get("error")
                results[item["id"]] = None if ok is True else _reason(reason)
    elif isinstance(data, dict):
        for key in ("succeeded", "success", "successful"):
            for ticket_id in data.get(key) or []:
                if _is_id(ticket_id):
                    results[ticket_id] = None
        failed = data.get("failed") or data.get("failures") or {}
        items = failed.items() if isinstance(failed, dict) else ((i, None) for i in failed)
        for ticket_id, reason in items:
            if isinstance(ticket_id, dict):
                ticket_id, reason = ticket_id.get("id"), ticket_id
            if str(ticket_id).isdigit():
                results[int(ticket_id)] = _reason(reason)
    return results


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(raw: Any) -> str:
    if isinstance(raw, list):
        return "; ".join(_reason(item) for item in raw) or "failed in bulk job"
    if isinstance(raw, dict):
        field, message = raw.get("field"), raw.get("message") or raw.get("code")
        return f"{field}: {message}" if field else str(message or raw)
    return str(raw) if raw else "failed in bulk job"
