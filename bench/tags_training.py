"""What the tags head adds to training: the same data trained without and with ``tags``.

    .venv/bin/python bench/tags_training.py [--data ../shared/data/tobi_bueck/v3_sample_dataset-tickets-multi-lang3-4k.csv]
        [--repeat 2] [--max-length 64]

Fields queue (as group), priority and type, MiniLM, one embedding cache (the first run fills it, so
every timed run embeds nothing: what is timed is everything after the encoder), the head choice
fixed (``c_dense=0.01``, as a nightly retrain may run). Each configuration runs ``--repeat`` times,
alternating; the wall time of ``train`` and its phases, with the load average before and after.
Results go to ``bench/results/tags_training.json``; the reading is in ``bench/results/tags_training.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from triage.models.training import train
from triage.models.training_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tobi_bueck" / "v3_sample_dataset-tickets-multi-lang3-4k.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    frame = pd.read_csv(args.data)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {
            "fields": ["group", "priority", "type"],
            "label_columns": {"group": "queue"},
            "max_length": args.max_length,
            "c_dense": 0.01,
            "store_root": Path(tmp),
            "embedding_cache": Path(tmp) / "cache",
        }
        train(frame, TrainConfig(**base))  # fills the embedding cache
        for repeat in range(args.repeat):
            for tags in (False, True):
                load = os.getloadavg()
                started = time.perf_counter()
                result = train(frame, TrainConfig(**base, tags=tags))
                seconds = time.perf_counter() - started
                runs.append(
                    {
                        "repeat": repeat,
                        "tags": tags,
                        "seconds": round(seconds, 1),
                        "timings": {k: round(v, 1) for k, v in result.timings.items()},
                        "tags_learned": len(result.tags.tags) if result.tags else 0,
                        "load_before": [round(x, 2) for x in load],
                        "load_after": [round(x, 2) for x in os.getloadavg()],
                    }
                )
                print(json.dumps(runs[-1]), flush=True)
    out = {
        "command": "bench/tags_training.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "rows": len(frame),
        "runs": runs,
    }
    path = ROOT / "bench" / "results" / "tags_training.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
