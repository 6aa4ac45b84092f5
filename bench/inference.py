"""Batched inference engine: speed against the Open Ticket AI way, share of the CPU's matmul
throughput, and peak memory of streaming prediction.

    .venv/bin/python bench/inference.py throughput [--tickets 1000] [--otai-tickets 150] [--batch-tokens 4096 16384]
    .venv/bin/python bench/inference.py memory [--sizes 2000 20000]
    .venv/bin/python bench/inference.py all

``throughput``: the same MiniLM encoder, the same tickets (subject + body of the shared tobi_bueck
file, or generated text without it), the same machine. Open Ticket AI calls a transformers
``text-classification`` pipeline once per ticket and per field (one fine-tuned model per field);
here that is three ``AutoModelForSequenceClassification`` pipelines over the same encoder. The
engine predicts all three fields in one encoder pass per token-budget batch (``predict_frame``,
end to end: HTML stripping, tokenising, TF-IDF, neighbour memory, top-k, the output frame).
Each token budget is timed; the fastest is compared. It also measures the CPU's float32 matmul rate (``torch.matmul``, 2048 x 2048) and counts the
encoder FLOPs of the real tokens the engine ran (``2 x weights x tokens`` plus attention) to give
the share of that rate the engine reaches.

``memory``: peak RSS of ``predict_parquet`` over 2,000 and 20,000 tickets, each size in a fresh
subprocess (max length 64, chunks of 1,000 rows).

Results go to ``bench/results/inference.json`` (merged per section); the reading is in
``bench/results/inference.md``.
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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.store import ModelStore  # noqa: E402
from models.text import ticket_text  # noqa: E402
from models.training import TrainConfig, train  # noqa: E402

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


def matmul_gflops(size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained float32 ``torch.matmul`` rate of this CPU, GFLOP/s (best of repeated runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
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


def otai_way(model_dir: Path, labels: dict[str, list[str]], texts: list[str], max_length: int) -> float:
    """Seconds for one text-classification pipeline call per ticket and field (Open Ticket AI's way)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pipes = []
    for names in labels.values():
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
        pipes.append(pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu"))
    for pipe in pipes:  # warm-up
        pipe(texts[0], truncation=True, max_length=max_length)
    started = time.perf_counter()
    for text in texts:
        for pipe in pipes:
            pipe(text, truncation=True, max_length=max_length)
    return time.perf_counter() - started


def throughput(args: argparse.Namespace) -> dict:
    from models.inference import InferenceEngine

    with tempfile.TemporaryDirectory() as folder:
        store = build_model(Path(folder), args.max_length)
        frame = tickets(args.tickets, seed=2)
        seconds = {}
        for budget in args.batch_tokens:
            engine = InferenceEngine.load(store, batch_tokens=budget)
            engine.predict_frame(frame.head(32))  # warm-up
            started = time.perf_counter()
            engine.predict_frame(frame)
            seconds[budget] = time.perf_counter() - started
        best = min(seconds, key=seconds.get)
        engine_seconds = seconds[best]
        texts = [ticket_text(s, d) for s, d in zip(frame["subject"], frame["description"], strict=True)]
        flops = encoder_flops(engine, texts)
        encoder_dir = store / "versions" / engine.model_version / "encoder"
        labels = {f: engine.labels(f) for f in engine.fields}
        otai_seconds = otai_way(encoder_dir, labels, texts[: args.otai_tickets], args.max_length)
    peak = matmul_gflops()
    engine_rate = args.tickets / engine_seconds
    otai_rate = args.otai_tickets / otai_seconds
    return {
        "tickets": args.tickets,
        "otai_tickets": args.otai_tickets,
        "max_length": args.max_length,
        "fields": len(labels),
        "engine_tickets_per_s_by_batch_tokens": {
            str(k): round(args.tickets / v, 1) for k, v in seconds.items()
        },
        "batch_tokens": best,
        "engine_seconds": round(engine_seconds, 2),
        "engine_tickets_per_s": round(engine_rate, 1),
        "otai_seconds": round(otai_seconds, 2),
        "otai_tickets_per_s": round(otai_rate, 2),
        "speedup": round(engine_rate / otai_rate, 1),
        "mean_tokens": round(float(np.mean([len(i) for i in engine.model.tokenize(texts)])), 1),
        "matmul_gflops": round(peak, 1),
        "engine_encoder_gflops": round(flops / engine_seconds / 1e9, 1),
        "share_of_matmul_rate": round(flops / engine_seconds / 1e9 / peak, 3),
    }


def memory(args: argparse.Namespace) -> dict:
    out = {"max_length": 64, "chunk_rows": 1000}
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
    from models.inference import InferenceEngine

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
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    sections = ["throughput", "memory"] if args.section == "all" else [args.section]
    for section in sections:
        info = machine()
        value = throughput(args) if section == "throughput" else memory(args)
        results[section] = {
            "command": " ".join(["bench/inference.py", *sys.argv[1:]]),
            "machine": info | {"load_average_after": [round(x, 2) for x in os.getloadavg()]},
            "result": value,
        }
        print(json.dumps(results[section], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
