"""Training time on CPU: embedding vs head fitting vs evaluation, at a few history sizes.

    .venv/bin/python bench/training.py [--tickets 700 1750 3500] [--encoder minilm] [--threads 2]

The data are the demo's: resolved tickets (status 4 or 5) of a generated account of ``--tickets``
tickets (3,500 is the demo's own account), fields group, priority and type, as ``triage demo``
trains on them (max length 128, at least 10 examples per class). Each size trains
once with ``triage.models.training.train`` and no embedding cache, so the embedding is timed in full; the
stages are :attr:`TrainingResult.timings`. "heads" is what a nightly retrain costs beyond
embedding new tickets (hashed TF-IDF, neighbour memory, cross-validated choice of each head and its
final fit); "evaluation" includes fitting the TF-IDF baseline on the same rows.

Scaling (issue 10): ``--grid 5000x10 20000x50 50000x100`` trains generated tickets (N tickets, K
groups with Zipf-imbalanced sizes, plus priority and type) at each point, each in its own process, and
records the wall time of ``train``, its CPU time (user + system, all threads) and the process's peak
memory (VmHWM) against the goal: 15 minutes and 4 GiB on 2 CPU cores, all fields. On a shared
machine the wall time grows with the load; CPU time within 15 minutes meets the goal even on one
free core. The texts are generated words, so the embedding is not what is
timed there: ``--embeddings random`` (default) fills the embedding cache with class-correlated random
vectors first, so the time is everything after the encoder (TF-IDF, memory, head selection and
fit, the baseline and the evaluation); ``--embeddings encoder`` embeds with the real encoder too.
The load average is recorded before and after each point (the development machine is shared).

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
import time
from pathlib import Path

import numpy as np
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


GOAL_SECONDS = 15 * 60
GOAL_BYTES = 4 * 2**30


def synthetic_tickets(n: int, k: int, seed: int = 0, vocabulary: int = 20_000) -> pd.DataFrame:
    """``n`` generated tickets: ``group`` one of ``k`` with Zipf-imbalanced sizes (each group has 30
    topical words among common Zipf-distributed ones, 20-80 words a ticket), ``priority`` (4 values,
    half from the group) and ``type`` (4 values, half at random): the shape of a real helpdesk's
    many-class, imbalanced, noisy fields, with generated words."""
    rng = np.random.default_rng(seed)
    syllables = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "ta",
        "vo",
        "xe",
        "zu",
        "pi",
        "do",
        "fa",
        "gi",
        "he",
        "ju",
        "qu",
        "so",
        "we",
        "ya",
        "be",
    ]
    words = np.array(
        ["".join(rng.choice(syllables, size=rng.integers(2, 5))) + str(i % 7) for i in range(vocabulary)]
    )
    shares = 1.0 / np.arange(1, k + 1) ** 1.1
    group = rng.choice(k, size=n, p=shares / shares.sum())
    topical = [rng.choice(vocabulary, size=30, replace=False) for _ in range(k)]
    zipf = 1.0 / np.arange(1, vocabulary + 1)
    zipf /= zipf.sum()
    priorities, types = ["low", "medium", "high", "urgent"], ["Incident", "Request", "Problem", "Change"]
    rows = []
    for g in group:
        tokens = np.concatenate(
            [
                rng.choice(vocabulary, size=rng.integers(20, 80), p=zipf),
                rng.choice(topical[g], size=rng.integers(2, 8)),
            ]
        )
        rng.shuffle(tokens)
        kind = rng.integers(0, 4) if rng.random() < 0.5 else g % 4
        rows.append(
            {
                "subject": " ".join(words[tokens[:5]]),
                "description": " ".join(words[tokens]),
                "group": f"G{g:03d}",
                "priority": priorities[(g + rng.integers(0, 2)) % 4],
                "type": types[kind],
            }
        )
    return pd.DataFrame(rows)


def _prefill_embeddings(frame: pd.DataFrame, config: TrainConfig, k: int) -> None:
    """Class-correlated random unit vectors for every text, in the embedding cache ``train`` reads."""
    from triage.models.embedding_cache import EmbeddingCache, encoder_fingerprint
    from triage.models.encoders import resolve_encoder
    from triage.models.training import prepare_frame

    assert config.embedding_cache is not None
    encoder = resolve_encoder(config.base_encoder, config.store_root)
    fingerprint = encoder_fingerprint(
        encoder.path, query_prefix=encoder.query_prefix, max_length=config.max_length, pooling=encoder.pooling
    )
    unique = prepare_frame(frame, config).drop_duplicates("text_hash")
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(k, 384)).astype(np.float32)
    codes = unique["group"].str[1:].astype(int).to_numpy()
    vectors = centres[codes] * 0.3 + rng.normal(size=(len(unique), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    EmbeddingCache(config.embedding_cache, fingerprint).add(unique["text_hash"].tolist(), vectors)


class _StageLog:
    """Appends one JSON line per training phase started/finished (wall, CPU, peak memory so far) to
    ``path``: a long point shows where it is and what each stage cost, even if it is stopped."""

    def __init__(self, path: Path) -> None:
        self.path, self.started_at, self.cpu = path, time.perf_counter(), time.process_time()

    def _write(self, event: str, phase: str, **extra: object) -> None:
        entry = {
            "event": event,
            "phase": phase,
            "wall_s": round(time.perf_counter() - self.started_at, 1),
            "cpu_s": round(time.process_time() - self.cpu, 1),
            "peak_rss_gib": round(_peak_bytes() / 2**30, 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            **extra,
        }
        with self.path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def started(self, phase: str, total: int) -> None:
        self._write("started", phase, steps=total)

    def advanced(self, phase: str, done: int, total: int) -> None:
        if phase == "head selection":
            self._write("step", phase, done=done, steps=total)

    def finished(self, phase: str, seconds: float) -> None:
        self._write("finished", phase, seconds=round(seconds, 1))


def _peak_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def scaling_point(
    n: int, k: int, encoder: str, embeddings: str, threads: int, log: Path | None = None
) -> dict:
    """Train the generated ``n`` x ``k`` tickets once, in this process; its time and peak memory
    (``log``: each phase's progress as JSON lines, see :class:`_StageLog`)."""
    torch.set_num_threads(threads)
    frame = synthetic_tickets(n, k)
    with tempfile.TemporaryDirectory() as store:
        config = TrainConfig(
            base_encoder=encoder,
            max_length=128,
            store_root=Path(store),
            embedding_cache=Path(store) / "cache",
        )
        if embeddings == "random":
            _prefill_embeddings(frame, config, k)
        before = os.getloadavg()
        started, cpu = time.perf_counter(), time.process_time()
        result = train(frame, config, progress=_StageLog(log) if log is not None else None)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _peak_bytes()
    return {
        "tickets": n,
        "classes": k,
        "embeddings": embeddings,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "stages": {stage: round(s, 1) for stage, s in result.timings.items()},
        "peak_rss_gib": round(peak / 2**30, 2),
        "goal_met": min(seconds, cpu) <= GOAL_SECONDS and peak <= GOAL_BYTES,
        "load_average_before": [round(x, 2) for x in before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "fields": {
            name: {
                "classes": len(outcome.labels),
                "applied_classes": len(outcome.labels) - len(outcome.suggest_only),
                "head": outcome.choice.summary(),
                "macro_f1": round(outcome.evaluation.macro_f1, 4),
                "baseline_macro_f1": round(outcome.baseline.macro_f1, 4),
            }
            for name, outcome in result.fields.items()
        },
    }


def scaling(points: list[str], encoder: str, embeddings: str, threads: int) -> None:
    """Each ``NxK`` point in its own process (so its peak memory is its own), into the results."""
    import subprocess

    runs = []
    for point in points:
        n, k = (int(x) for x in point.lower().split("x"))
        command = [sys.executable, __file__, "--point", str(n), str(k), "--encoder", encoder]
        command += ["--embeddings", embeddings, "--threads", str(threads)]
        stage_log = RESULTS.with_name(f"training.{n}x{k}.stages.jsonl")
        stage_log.unlink(missing_ok=True)  # this run's stages only
        command += ["--stage-log", str(stage_log)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            runs.append({"tickets": n, "classes": k, "error": done.stderr[-2000:]})
        else:
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        runs[-1]["command"] = "python bench/training.py " + " ".join(sys.argv[1:])
        print(json.dumps(runs[-1]), flush=True)
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        mine = {(r["tickets"], r["classes"]) for r in runs}
        kept = [  # other points measured before stay; this grid's replace theirs
            run
            for run in previous.get("scaling", {}).get("runs", [])
            if (run["tickets"], run["classes"]) not in mine
        ]
        previous["scaling"] = {  # after every point: a long grid keeps what it measured
            "goal": {"seconds": GOAL_SECONDS, "peak_rss_gib": GOAL_BYTES / 2**30, "cpus": 2},
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": threads,
                "python": platform.python_version(),
            },
            "runs": sorted([*kept, *runs], key=lambda run: (run["tickets"], run["classes"])),
        }
        RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[700, 1750, 3500])
    parser.add_argument("--grid", nargs="+", metavar="NxK", help="Scaling points: N tickets, K groups.")
    parser.add_argument("--point", type=int, nargs=2, metavar=("N", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--embeddings", choices=["random", "encoder"], default="random")
    parser.add_argument("--stage-log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-dir", type=Path, help="Write the evaluation report of the last size here.")
    args = parser.parse_args()
    if args.point:
        n, k = args.point
        point = scaling_point(n, k, args.encoder, args.embeddings, args.threads, args.stage_log)
        print(json.dumps(point))
        return
    if args.grid:
        scaling(args.grid, args.encoder, args.embeddings, args.threads)
        return
    torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory() as store:
        for i, n in enumerate(args.tickets):
            last = i == len(args.tickets) - 1
            runs.append(run(n, args.encoder, Path(store), args.report_dir if last else None))
            print(json.dumps(runs[-1]), flush=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(
        json.dumps(
            {
                **({"scaling": previous["scaling"]} if "scaling" in previous else {}),
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
