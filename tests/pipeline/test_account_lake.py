"""Many helpdesks in one lake: an account's lake (``<root>/account=<name>``) puts the account in every row it
writes, compaction keeps it, the row types read past it, and analysts query every account at once."""

from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq

from triage.lake import Lake
from triage.lake.compaction import compact_lake
from triage.lake.tables.quarantine import QUARANTINE, QuarantineRow

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def rows(run_id: str, *ticket_ids: int) -> list[QuarantineRow]:
    return [
        QuarantineRow(
            run_id=run_id, stage="extract", ticket_id=t, error="bad", raw_json="{}", quarantined_at=T0
        )
        for t in ticket_ids
    ]


def test_an_accounts_lake_writes_the_account_in_every_row_and_compaction_keeps_it(tmp_path):
    lake = Lake(tmp_path / "account=acme")
    assert lake.account == "acme"
    first = QUARANTINE.write(lake, rows("r1", 1, 2), date=T0, run_id="r1", name="p1")
    second = QUARANTINE.write(lake, rows("r2", 3), date=T0, run_id="r2", name="p1")
    assert first is not None and second is not None
    assert pq.read_table(first.path).column("account").to_pylist() == ["acme", "acme"]
    assert [r.ticket_id for r in QUARANTINE.read_partition(lake, date=T0, run_id="r1")] == [1, 2]

    merged = compact_lake(lake, settled_before=datetime.now(UTC))
    assert [m.rows for m in merged] == [3]
    assert pq.read_table(merged[0].path).column("account").to_pylist() == ["acme"] * 3
    assert sorted(lake.scan("quarantine").column("ticket_id").to_pylist()) == [1, 2, 3]


def test_a_lake_of_no_account_writes_no_account_column_and_an_explicit_account_wins(tmp_path):
    plain = QUARANTINE.write(Lake(tmp_path / "lake"), rows("r1", 1), date=T0, run_id="r1", name="p")
    assert plain is not None and "account" not in pq.read_table(plain.path).column_names
    named = Lake(tmp_path / "other", account="globex")
    part = QUARANTINE.write(named, rows("r1", 1), date=T0, run_id="r1", name="p")
    assert part is not None and pq.read_table(part.path).column("account").to_pylist() == ["globex"]


def test_analysts_query_every_account_with_duckdb_over_the_account_folders(tmp_path):
    for account, ids in {"acme": (1, 2), "globex": (1, 7)}.items():
        QUARANTINE.write(
            Lake(tmp_path / f"account={account}"), rows("r1", *ids), date=T0, run_id="r1", name="p"
        )
    # The query docs/lake.md shows ("Many helpdesks"), on the lake's root.
    found = duckdb.sql(
        f"SELECT account, ticket_id FROM read_parquet('{tmp_path}/account=*/quarantine/**/*.parquet', "
        "hive_partitioning = true) ORDER BY account, ticket_id"
    ).fetchall()
    assert found == [("acme", 1), ("acme", 2), ("globex", 1), ("globex", 7)]
