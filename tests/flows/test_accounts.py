"""Two helpdesks side by side: two simulators (two Freshdesk accounts) at once, one lake root and one model
store root, each account with its own config.yml (``ticket_system.account``, its own domain and key).

Each account's model is trained by the train flow; then both accounts' triage runs run at the same time in
one process, in apply mode, and meet in push (so each holds its lease while the other does: leases are per
account, and with ``lease_wait_seconds: 0`` a shared one would refuse the second run). No row, model or
write may cross accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import yaml
from flow_config import write_config

from triage.lake import Lake
from triage.lake.runs import run_history
from triage.models.store import ModelStore
from triage.simulator import SimulatorConfig, run_simulator

pytestmark = pytest.mark.flow
LAKE_DOCS = Path(__file__).resolve().parents[2] / "docs" / "lake.md"

ACCOUNTS = {
    "acme": SimulatorConfig(tickets=500, open_tickets=30, seed=21, domain="acme", bulk_delay_seconds=0.05),
    "globex": SimulatorConfig(
        tickets=500, open_tickets=30, seed=22, domain="globex", bulk_delay_seconds=0.05
    ),
}


def account_config(folder: Path, name: str, sim: Any, lake: Path, store: Path) -> Path:
    """The flow tests' fast config, for account ``name``: its simulator, its key, the shared roots."""
    path = write_config(folder / f"{name}.yml", sim.base_url, lake=lake, store=store, lease_wait_seconds=0)
    data = yaml.safe_load(path.read_text())
    data["ticket_system"].update(account=name, freshdesk_api_key=sim.api_key)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def accounts(prefect_harness, tmp_path_factory) -> Iterator[dict[str, Any]]:
    import triage.tasks.push
    from triage.flows.incremental import TriageParams, triage_flow
    from triage.flows.train import TrainParams, train_flow

    root = tmp_path_factory.mktemp("accounts")
    lake, store = root / "lake", root / "models"
    both_pushing = threading.Barrier(2, timeout=60)
    real = triage.tasks.push.push

    async def together(*args: Any, **kwargs: Any) -> Any:  # each run holds its lease while the other pushes
        with contextlib.suppress(threading.BrokenBarrierError):
            await asyncio.to_thread(both_pushing.wait)
        return await real(*args, **kwargs)

    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        patch.delenv("FRESHDESK_API_KEY", raising=False)  # each account's key is in its own config
        patch.delenv("FRESHDESK_API_KEY_SECRET_BLOCK", raising=False)
        sims = {name: stack.enter_context(run_simulator(config)) for name, config in ACCOUNTS.items()}
        configs = {name: account_config(root, name, sim, lake, store) for name, sim in sims.items()}
        trained = {name: train_flow(TrainParams(config=str(c), days=400)) for name, c in configs.items()}
        patch.setattr(triage.tasks.push, "push", together)
        with ThreadPoolExecutor(2) as pool:
            runs = {
                name: pool.submit(triage_flow, TriageParams(config=str(c))) for name, c in configs.items()
            }
            triaged = {name: run.result(timeout=300) for name, run in runs.items()}
        yield {"sims": sims, "lake": lake, "store": store, "trained": trained, "triaged": triaged}


def table(lake: Path, name: str) -> list[dict[str, Any]]:
    """Every row of every Parquet file of table ``name`` in the lake at ``lake``, as written."""
    files = sorted((lake / name).rglob("*.parquet"))
    return ds.dataset([str(f) for f in files], format="parquet").to_table().to_pylist() if files else []


def test_both_accounts_runs_complete_at_once_each_in_its_own_lake(accounts):
    assert sorted(p.name for p in accounts["lake"].iterdir()) == ["account=acme", "account=globex"]
    for name, summary in accounts["triaged"].items():
        history = run_history(Lake(accounts["lake"] / f"account={name}"), summary.run_id)
        assert ("run", "ok") in [(r["stage"], r["status"]) for r in history]


def test_every_row_of_an_account_carries_that_account_and_its_own_tickets(accounts):
    sims = accounts["sims"]
    for name, sim in sims.items():
        other = sims["globex" if name == "acme" else "acme"]
        lake = accounts["lake"] / f"account={name}"
        for folder in (p for p in lake.iterdir() if not p.name.startswith(("_", "."))):
            rows = table(lake, folder.name)
            assert {r["account"] for r in rows} == {name}, folder.name
        tickets = table(lake, "tickets")
        assert tickets and {t["ticket_id"] for t in tickets} <= set(sim.ticket_ids())
        own = sum(t["subject"] == sim.ticket(t["ticket_id"])["subject"] for t in tickets)
        theirs = sum(
            t["ticket_id"] in other.ticket_ids() and t["subject"] == other.ticket(t["ticket_id"])["subject"]
            for t in tickets
        )
        assert own == len(tickets) and theirs < len(tickets) / 10  # the same ids, other tickets


def test_each_account_has_its_own_model_and_predicts_with_it(accounts):
    versions = {}
    for name in accounts["trained"]:
        store = ModelStore(accounts["store"] / f"account={name}")
        current = store.current()
        assert current is not None and [v.version for v in store.list()] == [current.version]
        versions[name] = (current.version, store.manifest(current.version).training.data_hash)
        predictions = table(accounts["lake"] / f"account={name}", "predictions")
        assert {p["model_version"] for p in predictions} == {current.version}
    assert versions["acme"][1] != versions["globex"][1]  # trained on different histories
    assert sorted(p.name for p in accounts["store"].iterdir()) == ["account=acme", "account=globex"]


def test_every_write_reached_its_own_accounts_helpdesk_only(accounts):
    sims = accounts["sims"]
    for name, sim in sims.items():
        other = sims["globex" if name == "acme" else "acme"]
        lake = Lake(accounts["lake"] / f"account={name}")
        done = lake.scan("audit", filter=(pc.field("phase") == "result") & (pc.field("status") == "ok"))
        audited = {(r["ticket_id"], r["request_id"]) for r in done.to_pylist()}
        assert audited, f"{name}: the run should write something"
        received = {w.request_id for w in sim.writes}
        assert {request for _, request in audited} <= received
        assert not {request for _, request in audited} & {w.request_id for w in other.writes}
        changed = {c.ticket_id for c in sim.changes if c.source in ("api", "bulk")}
        assert changed == {ticket for ticket, _ in audited}


def test_the_docs_query_over_every_account_counts_each_accounts_own_writes(accounts):
    section = LAKE_DOCS.read_text(encoding="utf-8").split("### Many helpdesks", 1)[1]
    query = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    found = duckdb.sql(query.replace("data/lake", str(accounts["lake"]))).fetchall()
    expected: Counter[tuple[str, str]] = Counter()
    for name in accounts["sims"]:
        done = Lake(accounts["lake"] / f"account={name}").scan("audit").to_pylist()
        expected.update((name, r["field"]) for r in done if r["phase"] == "result" and r["status"] == "ok")
    assert {(account, field): n for account, field, n in found} == expected
    assert {account for account, _ in expected} == {"acme", "globex"}
