"""The lake's tables, one module each: its row type (whose fields are its columns), its Arrow schema built
from that type, and its reads and writes (:class:`~triage.lake.tables.base.Table`).

:data:`TABLES` lists them in the order of the docs' column reference; :class:`TableName` is the one place
their names are spelt.
"""

from typing import Any

from triage.lake.tables.audit import AUDIT, AuditRow
from triage.lake.tables.base import TS, Table, TableName, column, row_type
from triage.lake.tables.decisions import DECISIONS, DecisionRow
from triage.lake.tables.outcomes import OUTCOMES, OutcomeRow
from triage.lake.tables.predictions import PREDICTIONS, TOP_K, PredictionRow
from triage.lake.tables.quarantine import QUARANTINE, QuarantineRow
from triage.lake.tables.runs import RUNS, RunRow
from triage.lake.tables.tickets import TICKETS, TicketRow

#: Every table, in the order of the docs' column reference.
TABLES: dict[str, Table[Any]] = {
    t.name: t for t in (TICKETS, PREDICTIONS, DECISIONS, AUDIT, RUNS, QUARANTINE, OUTCOMES)
}
assert list(TABLES) == list(TableName), "every TableName has its table module"

__all__ = [
    "AUDIT",
    "DECISIONS",
    "OUTCOMES",
    "PREDICTIONS",
    "QUARANTINE",
    "RUNS",
    "TABLES",
    "TICKETS",
    "TOP_K",
    "TS",
    "AuditRow",
    "DecisionRow",
    "OutcomeRow",
    "PredictionRow",
    "QuarantineRow",
    "RunRow",
    "Table",
    "TableName",
    "TicketRow",
    "column",
    "row_type",
]
