"""Bulk updates (reference §10): the ``bulk_action`` body, the delayed job, and its outcome."""

from __future__ import annotations

from typing import Any

from triage.simulator.responses import MISSING_FIELD, field_error, invalid_field, should_be
from triage.simulator.store import Job, TicketStore
from triage.simulator.validation import validate_update

MAX_BULK_IDS = 100
SPAM_OR_DELETED = "The ticket is spam or deleted and cannot be updated"

Errors = list[dict[str, str]]


def validate_bulk(body: dict[str, Any], store: TicketStore) -> tuple[Errors, dict[str, Any]]:
    """Errors that reject the whole request (shape, ids, property values), and the ``bulk_action``."""
    errors = [invalid_field(key) for key in body if key != "bulk_action"]
    action = body.get("bulk_action")
    if action is None:
        return [*errors, field_error("bulk_action", MISSING_FIELD, "missing_field")], {}
    if not isinstance(action, dict):
        return [
            *errors,
            field_error("bulk_action", should_be("key/value pair", action), "datatype_mismatch"),
        ], {}
    errors += [invalid_field(key) for key in action if key not in ("ids", "properties", "reply")]
    ids = action.get("ids")
    if not ids:
        errors.append(field_error("ids", MISSING_FIELD, "missing_field"))
    elif not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids
    ):
        errors.append(
            field_error(
                "ids", "It should contain elements of type Positive Integer only", "datatype_mismatch"
            )
        )
    elif len(ids) > MAX_BULK_IDS:
        errors.append(
            field_error("ids", f"Has {len(ids)} elements, it can have maximum of {MAX_BULK_IDS} elements")
        )
    properties, reply = action.get("properties"), action.get("reply")
    if properties is None and reply is None:
        errors.append(
            field_error("request", "Please fill at least 1 of properties, reply fields", "missing_field")
        )
    if properties is not None:
        if not isinstance(properties, dict) or not properties:
            errors.append(
                field_error("properties", should_be("key/value pair", properties), "datatype_mismatch")
            )
        else:
            errors += validate_update(properties, store.account, None)[0]
    if reply is not None and not (
        isinstance(reply, dict) and isinstance(reply.get("body"), str) and reply["body"].strip()
    ):
        errors.append(field_error("reply", MISSING_FIELD, "missing_field"))
    return errors, action


def apply_job(job: Job, store: TicketStore) -> None:
    """Apply ``job`` ticket by ticket: tags append; each failure is recorded, the rest still apply."""
    for tid in job.ids:
        ticket = store.get(tid)
        if ticket is None:
            job.results.append(_failed(tid, [field_error("id", "There is no ticket matching the given id")]))
            continue
        if ticket.spam or ticket.deleted:
            job.results.append(_failed(tid, [field_error("id", SPAM_OR_DELETED)]))
            continue
        errors, values = validate_update(job.properties, store.account, ticket)
        if errors:
            job.results.append(_failed(tid, errors))
            continue
        store.apply(ticket, values, source="bulk", request_id=job.request_id, job_id=job.id, append_tags=True)
        if job.reply:
            store.add_note(
                ticket,
                job.reply["body"],
                private=False,
                user_id=store.account.me,
                source=0,
                request_id=job.request_id,
            )
        job.results.append({"id": tid, "success": True})
    succeeded = sum(1 for r in job.results if r["success"])
    job.status = "SUCCESS" if succeeded == len(job.ids) else "PARTIAL" if succeeded else "FAILED"


def _failed(tid: int, errors: Errors) -> dict[str, Any]:
    return {"id": tid, "success": False, "errors": errors}


def job_json(job: Job) -> dict[str, Any]:
    """``GET /jobs/{id}``: ``IN PROGRESS`` while waiting, then the outcome with per-ticket ``data``."""
    if job.status == "IN PROGRESS":
        return {"id": job.id, "status": job.status}
    return {"id": job.id, "status": job.status, "data": list(job.results)}
