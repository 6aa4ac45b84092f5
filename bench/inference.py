"""Batched inference engine: speed against the Open Ticket AI way, share of the CPU's matmul
throughput, and peak memory of streaming prediction.

    .venv/bin/python bench/inference.py throughput [--tickets 1000] [--otai-tickets 150] [--repeats 5]
        [--batch-tokens 4096] [--precisions float32 onnx-float32 bfloat16 int8] [--max-load 0.5] [--force] [--out FILE]
    .venv/bin/python bench/inference.py memory [--sizes 2000 20000]
    .venv/bin/python bench/inference.py all

``throughput``: the same MiniLM encoder, the same tickets (subject + body of the shared tobi_bueck
file, or generated text without it), the same machine, in one process run. Open Ticket AI calls a
transformers ``text-classification`` pipeline once per ticket and per field (one fine-tuned model
per field); here that is three ``AutoModelForSequenceClassification`` pipelines over the same
encoder. The engine predicts all three fields in one encoder pass per token-budget batch
(``predict_frame``, end to end: HTML stripping, tokenising, TF-IDF, neighbour memory, top-k, the
output frame). The engine's configurations (each precision and token budget) are timed
interleaved, ``--repeats`` rounds after a warm-up, the order reversed every other round, so a change
of load hits all of them alike; each gets tickets/s minimum, median and maximum, the load average
before and after, the share of the process's threads it got (CPU seconds / wall seconds / threads;
well under 1 means other work took the cores) and its speed-up over float32 at the same budget
(median of the per-round ratios, with their range). The per-ticket way is timed ``--repeats`` times
after them. The headline compares medians, using only precisions whose predictions stay within
tolerance of float32 (labels identical on at least 99.5% of tickets per field, probabilities within
0.02; the comparison on all the tickets is recorded). It also measures the
CPU's float32 and bfloat16 matmul rates (``torch.matmul``, 2048 x 2048) and counts the encoder FLOPs of
the real tokens the engine ran (``2 x weights x tokens`` plus attention) to give, per configuration, the
share of its own number format's rate the engine reaches (int8's against float32's).

``memory``: peak RSS of ``predict_parquet`` over 2,000 and 20,000 tickets, each size in a fresh
subprocess (max length 64, chunks of 1,000 rows).

A busy machine slows the per-ticket way far more than the batched engine, so figures taken under
load overstate the ratio. The run refuses to start (exit 2) when the 1-minute load average is above
``--max-load``, and refuses to record (exit 2) when other work's load rose above it during the run
(the load average less this process's own threads, before each configuration); ``--force`` records
anyway, flagged ``"busy": true``. Results go to ``bench/results/inference.json`` (merged per
section); the reading is in ``bench/results/inference.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.models.store import ModelStore  # noqa: E402
from triage.models.text import ticket_text  # noqa: E402
from triage.models.training import train  # noqa: E402
from triage.models.training_config import TrainConfig  # noqa: E402

TOBI = ROOT.parent / "shared" / "data" / "tobi_bueck" / "combined_v4v5_sample_en_de_dedup.csv"
RESULTS = ROOT / "bench" / "results" / "inference.json"
FIELDS = {"group": "queue", "priority": "priority", "type": "type"}


def tickets(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` tickets (ticket_id, subject, description, labels): tobi_bueck rows, or generated text."""
    rng = np.random.default_rng(seed)
    if TOBI.is_file():
        source = pd.read_csv(TOBI)
        rows = source.iloc[rng.integers(0, len(source), size=n)].reset_index(drop=True)
        frame = rows.rename(columns={"body": "description", "queue": "group"})
    else:
        words = [
            "printer",
            "vpn",
            "invoice",
            "refund",
            "laptop",
            "password",
            "network",
            "outage",
            "screen",
            "account",
            "billing",
        ]
        frame = pd.DataFrame(
            {
                "subject": [" ".join(rng.choice(words, 4)) for _ in range(n)],
                "description": [" ".join(rng.choice(words, int(rng.integers(20, 120)))) for _ in range(n)],
                "group": rng.choice(["A", "B", "C"], n),
                "priority": rng.choice(["low", "high"], n),
                "type": rng.choice(["Incident", "Request"], n),
            }
        )
    return frame.assign(ticket_id=np.arange(1, n + 1))[["ticket_id", "subject", "description", *FIELDS]]


def build_model(store: Path, max_length: int) -> Path:
    """A MiniLM hybrid model (default head, with memory) trained on 400 tickets; returns the store."""
    config = TrainConfig(max_length=max_length, min_examples_per_class=5, store_root=store, c_dense=0.01)
    result = train(tickets(400, seed=1), config)
    ModelStore(store).register(result)
    return store


#: The matmul whose rate a precision's encoder work is measured against (int8 against float32: torch
#: has no plain int8 matmul to time on CPU).
PEAK_DTYPE = {"float32": "float32", "onnx-float32": "float32", "bfloat16": "bfloat16", "int8": "float32"}


def matmul_gflops(dtype: str = "float32", size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained ``torch.matmul`` rate of this CPU in ``dtype``, GFLOP/s (best of repeated runs)."""
    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    torch.matmul(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def encoder_flops(engine, texts: list[str]) -> float:
    """FLOPs of the encoder over the real (unpadded) tokens: dense layers plus attention."""
    config = engine.model.encoder.config
    d, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_token = 2 * layers * (4 * d * d + 2 * d * ffn)
    lengths = np.array([len(ids) for ids in engine.model.tokenize(texts)], dtype=np.float64)
    attention = layers * 4 * d * lengths**2  # scores and weighted sum
    return float(per_token * lengths.sum() + attention.sum())


class MachineBusyError(RuntimeError):
    """Other work on the machine would distort the figures."""


def check_load(load: float, max_load: float, *, own_threads: int = 0, force: bool = False) -> bool:
    """Whether the machine is busy: the 1-minute ``load`` less this process's ``own_threads`` above
    ``max_load``. Raises :class:`MachineBusyError` when it is, unless ``force`` (then returns True)."""
    others = load - own_threads
    if others <= max_load:
        return False
    if force:
        return True
    raise MachineBusyError(
        f"machine busy: 1-minute load average {load:.2f}"
        + (f" ({others:.2f} beyond this run's {own_threads} threads)" if own_threads else "")
        + f" is above --max-load {max_load}; nothing recorded. Rerun on a quiet machine, "
        "or pass --force to record figures flagged busy."
    )


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def _summary(seconds: list[float], cpu: float, items: int, before: float) -> dict:
    rates = sorted(items / s for s in seconds)
    return {
        "tickets_per_s": {
            "min": round(rates[0], 2),
            "median": round(float(np.median(rates)), 2),
            "max": round(rates[-1], 2),
        },
        "median_seconds": round(float(np.median(seconds)), 3),
        "load_before": before,
        "load_after": load1(),
        "cpu_share": round(cpu / sum(seconds) / torch.get_num_threads(), 2),
    }


def timed(run: Callable[[], object], repeats: int, items: int) -> dict:
    """``run`` after a warm-up call, ``repeats`` times: items/s (min, median, max), load and CPU share."""
    return interleaved({"run": run}, repeats, items)["run"]


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, items: int) -> dict[str, dict]:
    """Each of ``runs`` once to warm up, then ``repeats`` rounds of all of them (order reversed every
    other round): per run what :func:`timed` gives, plus ``seconds`` per round for paired ratios."""
    for run in runs.values():
        run()
    before = load1()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu = dict.fromkeys(runs, 0.0)
    for round_ in range(repeats):
        for name in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
            cpu_started, started = time.process_time(), time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - started)
            cpu[name] += time.process_time() - cpu_started
    return {
        name: _summary(seconds[name], cpu[name], items, before)
        | {"seconds": [round(x, 3) for x in seconds[name]]}
        for name in runs
    }


def paired_speedup(seconds: list[float], baseline: list[float]) -> dict:
    """Per-round ratios ``baseline / seconds`` of two interleaved runs: median, minimum, maximum."""
    ratios = sorted(b / s for s, b in zip(seconds, baseline, strict=True))
    return {
        "median": round(float(np.median(ratios)), 2),
        "min": round(ratios[0], 2),
        "max": round(ratios[-1], 2),
    }


def otai_pipelines(model_dir: Path, labels: dict[str, list[str]]) -> list:
    """One transformers text-classification pipeline per field over the same encoder (Open Ticket AI's way)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pipes = []
    for names in labels.values():
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
        pipes.append(pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu"))
    return pipes


def throughput(args: argparse.Namespace) -> dict:
    from triage.models.inference import InferenceEngine, compare

    busy = False

    def gate() -> None:
        nonlocal busy
        busy |= check_load(load1(), args.max_load, own_threads=torch.get_num_threads(), force=args.force)

    with tempfile.TemporaryDirectory() as folder:
        store = build_model(Path(folder), args.max_length)
        frame = tickets(args.tickets, seed=2)
        texts = [ticket_text(s, d) for s, d in zip(frame["subject"], frame["description"], strict=True)]
        gate()
        engines = {
            (precision, budget): InferenceEngine.load(store, batch_tokens=budget, precision=precision)
            for precision in args.precisions
            for budget in args.batch_tokens
        }
        reference = engines["float32", args.batch_tokens[0]].predict(texts)
        tolerance = {}
        for precision in args.precisions[1:]:
            found = compare(reference, engines[precision, args.batch_tokens[0]].predict(texts))
            tolerance[precision] = {
                "tickets": found.texts,
                "label_agreement": {f: round(v, 4) for f, v in found.label_agreement.items()},
                "max_probability_diff": {f: round(v, 4) for f, v in found.max_probability_diff.items()},
                "within": found.within,
            }
        gate()
        timings = interleaved(
            {
                f"{precision}/{budget}": partial(engine.predict_frame, frame)
                for (precision, budget), engine in engines.items()
            },
            args.repeats,
            args.tickets,
        )
        configurations = []
        for precision, budget in engines:
            timing = timings[f"{precision}/{budget}"]
            baseline = timings[f"float32/{budget}"]["seconds"]
            speedup = paired_speedup(timing["seconds"], baseline)
            configurations.append(
                {"precision": precision, "batch_tokens": budget, **timing, "vs_float32": speedup}
            )
        engine = engines["float32", args.batch_tokens[0]]
        flops = encoder_flops(engine, texts)
        encoder_dir = store / "versions" / engine.model_version / "encoder"
        labels = {f: engine.labels(f) for f in engine.fields}
        pipes = otai_pipelines(encoder_dir, labels)
        otai_texts = texts[: args.otai_tickets]

        def per_ticket() -> None:
            for text in otai_texts:
                for pipe in pipes:
                    pipe(text, truncation=True, max_length=args.max_length)

        gate()
        otai = timed(per_ticket, args.repeats, len(otai_texts))
    gate()
    peaks = {dtype: matmul_gflops(dtype) for dtype in sorted(set(PEAK_DTYPE.values()))}
    for c in configurations:  # the encoder's useful work against the matmul rate of its own number format
        peak = peaks[PEAK_DTYPE[c["precision"]]]
        c["share_of_matmul_rate"] = round(flops / c["median_seconds"] / 1e9 / peak, 3)
    usable = [c for c in configurations if c["precision"] == "float32" or tolerance[c["precision"]]["within"]]
    best = max(usable, key=lambda c: c["tickets_per_s"]["median"])
    engine_rate, otai_rate = best["tickets_per_s"]["median"], otai["tickets_per_s"]["median"]
    encoder_gflops = flops / best["median_seconds"] / 1e9
    return {
        "busy": busy,
        "repeats": args.repeats,
        "tickets": args.tickets,
        "otai_tickets": len(otai_texts),
        "max_length": args.max_length,
        "fields": len(labels),
        "engine_tickets_per_s_by_batch_tokens": {
            f"{c['precision']}/{c['batch_tokens']}": c["tickets_per_s"]["median"] for c in configurations
        },
        "precision": best["precision"],
        "batch_tokens": best["batch_tokens"],
        "engine_tickets_per_s": engine_rate,
        "otai_tickets_per_s": otai_rate,
        "speedup": round(engine_rate / otai_rate, 1),
        "speedup_range": [
            round(best["tickets_per_s"]["min"] / otai["tickets_per_s"]["max"], 1),
            round(best["tickets_per_s"]["max"] / otai["tickets_per_s"]["min"], 1),
        ],
        "configurations": configurations,
        "otai_way": otai,
        "tolerance": tolerance,
        "mean_tokens": round(float(np.mean([len(i) for i in engine.model.tokenize(texts)])), 1),
        "matmul_gflops": {dtype: round(rate, 1) for dtype, rate in peaks.items()},
        "engine_encoder_gflops": round(encoder_gflops, 1),
        "share_of_matmul_rate": best["share_of_matmul_rate"],
    }


def memory(args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"max_length": 64, "chunk_rows": 1000}
    with tempfile.TemporaryDirectory() as folder:
        store = build_model(Path(folder) / "store", 64)
        for size in args.sizes:
            src = Path(folder) / f"tickets-{size}.parquet"
            tickets(size, seed=3)[["ticket_id", "subject", "description"]].to_parquet(src)
            command = [
                sys.executable,
                __file__,
                "_rss",
                str(store),
                str(src),
                str(Path(folder) / "out.parquet"),
            ]
            report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            out[str(size)] = report
    sizes = [str(s) for s in args.sizes]
    out["rss_ratio"] = round(out[sizes[-1]]["peak_rss_mb"] / out[sizes[0]]["peak_rss_mb"], 3)
    return out


def _rss(store: str, src: str, dst: str) -> None:
    """Child process: stream ``src`` through the current model and report peak RSS."""
    from triage.models.inference import InferenceEngine

    engine = InferenceEngine.load(store)
    started = time.perf_counter()
    rows = engine.predict_parquet(src, dst, chunk_rows=1000)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}))


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "shared_data": TOBI.is_file(),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_rss":
        _rss(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["throughput", "memory", "all"])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--otai-tickets", type=int, default=150)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[4096])
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["float32", "onnx-float32", "bfloat16", "int8"],
        default=["float32", "onnx-float32", "bfloat16", "int8"],
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per configuration")
    parser.add_argument(
        "--max-load", type=float, default=0.5, help="most 1-minute load average of other work (default 0.5)"
    )
    parser.add_argument("--force", action="store_true", help="record on a busy machine, flagged busy")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.precisions[0] != "float32" or args.repeats < 1:
        parser.error("--precisions must start with float32 (the reference) and --repeats must be positive")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    sections = ["throughput", "memory"] if args.section == "all" else [args.section]
    try:
        for section in sections:
            busy = check_load(load1(), args.max_load, force=args.force)
            info = machine()
            value = throughput(args) if section == "throughput" else memory(args)
            results[section] = {
                "command": " ".join(["bench/inference.py", *sys.argv[1:]]),
                "busy": busy or bool(value.get("busy")),
                "max_load": args.max_load,
                "machine": info | {"load_average_after": [round(x, 2) for x in os.getloadavg()]},
                "result": value,
            }
            print(json.dumps(results[section], indent=2), flush=True)
    except MachineBusyError as exc:
        print(f"bench/inference.py: {exc}", file=sys.stderr)
        sys.exit(2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
