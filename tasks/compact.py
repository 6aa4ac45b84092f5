"""Compaction of the whole lake under its lease (the nightly flow's task, and a migration of a lake).

Every table's date partitions that hold parts become one file each (:mod:`triage.lake.compaction`),
the audit's open items folded into their state first (:func:`triage.tasks.audit.fold_open_items`) and the
changes done added to their index after (:func:`triage.tasks.audit.index_done`); parts a
retried stage would replace only once older than ``pipeline.retain_parts_days``; then retained parts
older than that are deleted (vacuum). Push merges its own audit
parts after every run; this merges the other tables, whatever a cut-off run left, and old partitions
a backfill wrote to.

Migrating a lake written before compaction existed is the same work, once:

    python -m triage.tasks.compact --config config.yml
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from triage.lake import Lake, TableName
from triage.lake.compaction import Merged, compact_lake, summary, vacuum
from triage.lake.lease import hold
from triage.lake.runs import utcnow
from triage.settings import load_settings
from triage.tasks.audit import fold_open_items, index_done
from triage.tasks.context import StageContext

log = logging.getLogger(__name__)


def compact_all(lake: Lake, *, settled_before: datetime) -> list[Merged]:
    """Merge every table's parts (those a retry would replace once written before ``settled_before``),
    folding the audit's open items first; then add the merged audit files to the done index."""
    fold: dict[str, Callable[[Sequence[str]], None]] = {
        TableName.AUDIT: lambda parts: fold_open_items(lake, list(parts))
    }
    merged = compact_lake(lake, settled_before=settled_before, before_merge=fold)
    index_done(lake)
    return merged


def compact_and_vacuum(
    lake: Lake, *, run_id: str, flow: str, retain_days: int, lease_seconds: int, wait: int
) -> str:
    """Hold the lake's lease, compact every table and vacuum retained parts; the line that was logged."""
    horizon = utcnow() - timedelta(days=retain_days)
    with hold(lake, run_id=run_id, flow=flow, ttl=lease_seconds, wait=wait):
        merged = compact_all(lake, settled_before=horizon)
        deleted = vacuum(lake, older_than=horizon)
    line = f"{summary(merged)}; vacuum: {deleted} retained parts older than {retain_days} days deleted"
    log.info("%s", line)
    return line


def compact(ctx: StageContext) -> str:
    """The nightly compaction stage (no ``runs`` row of its own: the nightly run's row covers it)."""
    settings = ctx.settings()
    pipeline = settings.pipeline
    return compact_and_vacuum(
        ctx.lake(settings),
        run_id=ctx.run_id,
        flow=ctx.flow,
        retain_days=pipeline.retain_parts_days,
        lease_seconds=pipeline.lease_seconds,
        wait=pipeline.lease_wait_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Compact a triage lake (and vacuum retained parts) once.")
    parser.add_argument(
        "--config", help="config.yml naming the lake (default: $TRIAGE_CONFIG or ./config.yml)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pipeline = load_settings(args.config).pipeline
    compact_and_vacuum(
        Lake(pipeline.lake),
        run_id=f"compact-{utcnow():%Y%m%dT%H%M%S}",
        flow="compact",
        retain_days=pipeline.retain_parts_days,
        lease_seconds=pipeline.lease_seconds,
        wait=pipeline.lease_wait_seconds,
    )


if __name__ == "__main__":
    main()
