"""A small synthetic labelled ticket set for the model tests (no shared data needed), and the tests' training
settings."""

from __future__ import annotations

import random

import pandas as pd

TOPICS = {
    "Billing": (
        ["invoice", "refund", "payment", "charge", "billing", "credit card"],
        ["I was charged twice", "the invoice amount is wrong", "please refund my payment"],
    ),
    "Hardware": (
        ["printer", "laptop", "monitor", "keyboard", "docking station", "screen"],
        ["it does not turn on", "it makes a strange noise", "it broke after the update"],
    ),
    "Network": (
        ["vpn", "wifi", "router", "internet", "firewall", "proxy"],
        ["the connection keeps dropping", "I cannot connect from home", "it is very slow"],
    ),
}
URGENCY = {"high": "URGENT: production is down", "low": "No rush, whenever you have time"}
KINDS = {"Incident": "Something is broken", "Request": "Could you please set up"}


def labelled_tickets(n: int = 150, seed: int = 0, *, rare: dict[str, int] | None = None) -> pd.DataFrame:
    """``n`` tickets with subject, description, group, priority and type; ``rare`` adds tiny groups."""
    rng = random.Random(seed)
    rows = []
    groups = list(TOPICS)
    for i in range(n):
        group = groups[i % len(groups)]
        rows.append(_ticket(rng, group, i))
    for group, count in (rare or {}).items():
        for i in range(count):
            rows.append(_ticket(rng, groups[i % len(groups)], i) | {"group": group})
    return pd.DataFrame(rows)


def _ticket(rng: random.Random, group: str, i: int) -> dict[str, str]:
    nouns, problems = TOPICS[group]
    priority = rng.choice(list(URGENCY))
    kind = rng.choice(list(KINDS))
    noun = rng.choice(nouns)
    return {
        "subject": f"{noun.capitalize()} issue #{i}",
        "description": f"<p>{KINDS[kind]}: my {noun}, {rng.choice(problems)}.</p><p>{URGENCY[priority]}.</p>",
        "group": group,
        "priority": priority,
        "type": kind,
    }


RARE = {"Facilities": 4}
"""A group with fewer training rows than ``min_examples_per_class``: learned, but only suggested."""


def tiny_config(tmp_path, **overrides):
    """Training settings for tests: the packaged MiniLM, short texts, small class minimum."""
    from triage.models.training_config import TrainConfig

    values = {"max_length": 32, "min_examples_per_class": 10, "store_root": tmp_path}
    return TrainConfig(**{**values, **overrides})
