"""What the pipeline benchmarks share (bench/pipeline_hourly.py, bench/backfill_scale.py): the arguments
of their work folder and result, the work folder's set-up, the head of the result, the config.yml they
write; and, for every benchmark against the simulator, its address once it serves.

Not a benchmark: imported by the scripts beside it (``python bench/<script>.py`` puts bench/ first on
``sys.path``). Only the standard library and yaml at run time, so it imports before the scripts' own
``sys.path`` set-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from triage.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]


def served_url(sim: Simulator) -> str:
    """The simulator's API base (``http://127.0.0.1:PORT/api/v2``), which it has once it serves."""
    if sim.base_url is None:
        raise RuntimeError("the simulator is not serving yet (no base_url): start its server first")
    return sim.base_url


def add_work_arguments(parser: argparse.ArgumentParser, *, name: str, work: str) -> None:
    """``--store``, ``--name``, ``--out`` and ``--work`` (default ``data/<work>``)."""
    parser.add_argument(
        "--store", type=Path, default=None, help="a model store trained on the same simulator: no train flow"
    )
    parser.add_argument("--name", default=name, help="file name of the recorded result")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / work)


def fresh_work(args: argparse.Namespace) -> Path:
    """Empty ``--work`` (made anew); returns the model store: ``--store``, else ``models`` in it."""
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    store: Path = args.store or args.work / "models"
    return store


def result_head() -> dict[str, Any]:
    """When, on what machine and by which command the result was recorded."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join(["python", *sys.argv]),
    }


def write_config(
    path: Path,
    base_url: str,
    *,
    limits: dict[str, Any],
    store: Path,
    max_length: int,
    lake: Path,
    mode: str,
    fields: dict[str, Any] | None = None,
    **pipeline: Any,
) -> Path:
    """A config.yml at ``path``: the Freshdesk at ``base_url`` with the adapter's ``limits`` (plan, rate
    window, bulk polling), the packaged MiniLM at ``max_length`` tokens in ``store``, the lake at ``lake``
    run in ``mode`` with the other ``pipeline`` settings, and ``fields`` where given."""
    data: dict[str, Any] = {
        "ticket_system": {"adapter": "freshdesk", "base_url": base_url, **limits},
        "model": {"store": str(store), "base_encoder": "minilm", "max_length": max_length},
        "pipeline": {"lake": str(lake), "mode": mode, **pipeline},
    }
    if fields is not None:
        data["fields"] = fields
    path.write_text(yaml.safe_dump(data))
    return path
