"""What the flow tests and the deployment tests configure: the simulator and a fast config.yml."""

from __future__ import annotations

from pathlib import Path

import yaml

from triage.simulator import SimulatorConfig

#: Small hash spaces and fixed regularisation: the heads train in seconds instead of minutes.
FAST_TRAINING = {"hashing": {"word_buckets": 16384, "char_buckets": 16384}, "c_dense": 1.0, "c_sparse": 1.0}
SIMULATOR = SimulatorConfig(tickets=700, open_tickets=30, seed=3, bulk_delay_seconds=0.05)


def write_config(path: Path, base_url: str, *, lake: Path, store: Path, **pipeline) -> Path:
    data = {
        "ticket_system": {
            "adapter": "freshdesk",
            "base_url": base_url,
            "plan": "custom",
            "rate_limit_total": 100000,
            "bulk_poll_interval_seconds": 0.05,
            "backoff_base_seconds": 0.01,
        },
        "model": {
            "store": str(store),
            "base_encoder": "minilm",
            "max_length": 64,
            "min_examples_per_class": 8,
            "train_options": FAST_TRAINING,
        },
        # Explicit thresholds: the small hold-out rarely proves the model's own 0.9-precision ones.
        "fields": {
            "group": {"apply_threshold": 0.5, "suggest_threshold": 0.3},
            "priority": {"apply_threshold": 0.5, "suggest_threshold": 0.3, "requires": ["group"]},
            "type": {"apply_threshold": 0.5, "suggest_threshold": 0.3},
        },
        "pipeline": {"lake": str(lake), "mode": "apply", "bulk_settle_seconds": 0, **pipeline},
    }
    path.write_text(yaml.safe_dump(data))
    return path
