"""Training time on CPU: embedding vs head fitting vs evaluation, at a few history sizes.

    .venv/bin/python bench/training.py [--tickets 700 1750 3500] [--encoder minilm] [--threads 2]

The data are the demo's: resolved tickets (status 4 or 5) of a generated account of ``--tickets``
tickets (3,500 is the demo's own account), fields group, priority and type, as ``triage demo``
trains on them (max length 128, at least 10 examples per class). Each size trains
once with ``triage.models.training.train`` and no embedding cache, so the embedding is timed in full; the
stages are :attr:`TrainingResult.timings`. "heads" is what a nightly retrain costs beyond
embedding new tickets (hashed TF-IDF, neighbour memory, cross-validated choice of each head and its
final fit); "evaluation" includes fitting the TF-IDF baseline on the same rows.

Results go to ``bench/results/training.json``; the reading is in ``bench/results/training.md``.
``--report-dir reports/generated`` also writes the evaluation report (model beside baseline) of the
last size: the committed ``reports/generated`` is the demo's own account, 3,500 tickets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.models.report import write_report  # noqa: E402
from triage.models.training import train  # noqa: E402
from triage.models.training_config import TrainConfig  # noqa: E402
from triage.settings import PipelineSettings  # noqa: E402
from triage.simulator import SimulatorConfig  # noqa: E402
from triage.simulator.account import PRIORITIES  # noqa: E402
from triage.simulator.simulator import Simulator  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "training.json"
PRIORITY = {number: name for name, number in PRIORITIES.items()}
HISTORY_STATUSES = PipelineSettings().history_statuses


def demo_history(tickets: int, seed: int = 42) -> pd.DataFrame:
    """The resolved tickets of a generated account of ``tickets`` (as the demo's: 3,500 with 300
    open) with their final group, priority and type."""
    config = SimulatorConfig(tickets=tickets, open_tickets=min(300, tickets // 10), seed=seed)
    simulator = Simulator(config)
    groups = simulator.store.account.groups
    rows = []
    for ticket_id in sorted(simulator.store.tickets):
        ticket = simulator.ticket(ticket_id)
        if ticket["status"] not in HISTORY_STATUSES:
            continue
        rows.append(
            {
                "subject": ticket["subject"],
                "description": ticket["description_text"],
                "group": groups.get(ticket["group_id"]),
                "priority": PRIORITY.get(ticket["priority"]),
                "type": ticket["type"],
            }
        )
    return pd.DataFrame(rows)


def run(n: int, encoder: str, store: Path, report_dir: Path | None) -> dict:
    frame = demo_history(n)
    config = TrainConfig(base_encoder=encoder, max_length=128, min_examples_per_class=10, store_root=store)
    result = train(frame, config)
    if report_dir is not None:
        result.dataset_name = f"generated demo account ({n} tickets, seed 42), resolved tickets"
        result.command = "python bench/training.py " + " ".join(sys.argv[1:])
        write_report(result.report(), report_dir)
    return {
        "rows": len(frame),
        "train_rows": result.n_train,
        "encoder": result.encoder.name,
        "seconds": {stage: round(s, 1) for stage, s in result.timings.items()},
        "fields": {
            name: {
                "head": outcome.choice.summary(),
                "macro_f1": round(outcome.evaluation.macro_f1, 4),
                "baseline_macro_f1": round(outcome.baseline.macro_f1, 4),
            }
            for name, outcome in result.fields.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[700, 1750, 3500])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-dir", type=Path, help="Write the evaluation report of the last size here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory() as store:
        for i, n in enumerate(args.tickets):
            last = i == len(args.tickets) - 1
            runs.append(run(n, args.encoder, Path(store), args.report_dir if last else None))
            print(json.dumps(runs[-1]), flush=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "python bench/training.py " + " ".join(sys.argv[1:]),
                "machine": {
                    "cpus": os.cpu_count(),
                    "torch_threads": args.threads,
                    "python": platform.python_version(),
                },
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
