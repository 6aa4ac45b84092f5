"""The API key in no output of whole flows: the train flow, then triage runs in suggest mode (through the
CLI) and in apply mode, with a recognisable key and faults that make the adapter warn and a stage fail once.

Searched: captured stdout and stderr, every log record, the Prefect database (flow and task runs with their
parameters and state messages, logs, artifacts, events), the result storage, and every file of the lakes
and the model store (Parquet by its values and raw bytes, safetensors and JSON by raw bytes). Each place is
shown to hold what the runs wrote there, so an empty search is not a search of the wrong place.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from flow_config import SIMULATOR, write_config
from typer.testing import CliRunner

from triage.simulator import FaultRule, run_simulator

pytestmark = pytest.mark.flow

KEY = "fdk-LEAKCHECK-4Q9Z7WXC2V"
#: The key and the Basic-auth header values made of it.
FORMS = [KEY.encode()] + [base64.b64encode(f"{KEY}:{p}".encode()) for p in ("X", "x", "")]


def leaks(data: bytes | str) -> list[bytes]:
    data = data.encode() if isinstance(data, str) else data
    return [form for form in FORMS if form in data]


def file_text(path: Path) -> bytes:
    """A file's bytes; a Parquet file's values too (its pages are compressed)."""
    raw = path.read_bytes()
    if path.suffix == ".parquet":
        raw += str(pq.read_table(path).to_pylist()).encode()
    return raw


class Records(logging.Handler):
    """Every record the project's and Prefect's loggers emit, down to DEBUG, formatted with its traceback."""

    LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> Records:
        self.level_was = logging.getLogger().level
        logging.getLogger().setLevel(logging.DEBUG)
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().setLevel(self.level_was)
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


def prefect_database() -> bytes:
    """The harness's SQLite database (with its write-ahead log) once every log record has been sent."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    APILogHandler().flush()
    path = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_the_api_key_is_in_no_output_of_a_train_run_and_triage_runs_in_both_modes(
    prefect_harness, tmp_path, monkeypatch, capfd
):
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

    import triage.flows.incremental
    from triage.cli import app
    from triage.flows.incremental import TriageParams, triage_flow
    from triage.flows.train import TrainParams, train_flow

    monkeypatch.setenv("FRESHDESK_API_KEY", KEY)
    retried = triage.flows.incremental.extract_task.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(triage.flows.incremental, "extract_task", retried)  # its retry without the backoff
    get = {"method": "GET", "path": "/tickets"}
    with Records() as records, run_simulator(dataclasses.replace(SIMULATOR, api_key=KEY, tickets=350)) as sim:
        store = tmp_path / "models"
        configs = {
            lake: write_config(tmp_path / f"{lake}.yml", sim.base_url, lake=tmp_path / lake, store=store)
            for lake in ("train", "suggest", "apply")
        }
        sim.faults.add(FaultRule("storm", next=1, retry_after=0, **get))
        sim.faults.add(FaultRule("error", status=502, next=1, **get))
        trained = train_flow(TrainParams(config=str(configs["train"]), days=400))

        sim.faults.add(FaultRule("error", status=500, next=1, path="/notes"))
        sim.faults.add(FaultRule("drop", next=1, after=True, path="/notes"))
        suggested = CliRunner().invoke(app, ["run", "--config", str(configs["suggest"]), "--mode", "suggest"])

        time.sleep(2.1)  # whole-second times: the notes' updates fall inside the apply run's window
        sim.faults.add(FaultRule("error", status=503, next=6, **get))  # extract fails, its retry reads
        sim.faults.add(FaultRule("malformed", next=1, **get))
        sim.faults.add(FaultRule("storm", next=1, retry_after=0, method="POST", path="/bulk_update"))
        applied = triage_flow(TriageParams(config=str(configs["apply"])))
        notes = sum(len(sim.store.notes.get(t, [])) for t in sim.truth())

    assert trained.promoted and suggested.exit_code == 0, suggested.output
    assert notes and applied.counts["push"]["*"]["requests"] > 0
    captured = capfd.readouterr()
    outputs = {
        "stdout": captured.out + suggested.stdout,
        "stderr": captured.err + suggested.stderr,
        "log records": "\n".join(records.lines),
    }
    assert "retry 1/" in outputs["log records"] and "rate limit reached" in outputs["log records"]
    database = prefect_database()
    for shown in (trained.run_id, applied.run_id, "TransientError", "rate limit reached", "Triage run"):
        assert shown.encode() in database, shown  # runs, a failed attempt's state, logs, artifacts
    outputs["Prefect database"] = database
    results = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())
    files = [p for root in (tmp_path, results) for p in root.rglob("*") if p.is_file()]
    written = {p.suffix for p in files}
    assert {".parquet", ".safetensors", ".json"} <= written
    assert any("_prefect_results" in p.parts for p in files)  # the stages' cached results
    for path in files:
        outputs[str(path)] = file_text(path)
    assert {where: leaks(text) for where, text in outputs.items() if leaks(text)} == {}
