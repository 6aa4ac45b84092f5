"""Decision rules: thresholds, the ticket system's own choices, overwrite, fallback and consistency."""

import pytest

from triage.adapters.base import FieldSpec
from triage.settings import FieldRule
from triage.tasks.rules import REASONS, Prediction, decide_ticket

SPECS = {
    "group": FieldSpec("group", "Group", "group", {"Billing": 101, "Technical Support": 102}),
    "priority": FieldSpec(
        "priority", "Priority", "priority", {"Low": 1, "Medium": 2, "High": 3, "Urgent": 4}, default="Low"
    ),
    "type": FieldSpec("type", "Type", "type", {"Question": "Question", "Incident": "Incident"}),
}
EMPTY = {"group": None, "priority": 1, "type": None}
MODEL_THRESHOLDS = {"group": (0.8, 0.5), "priority": (0.7, 0.4), "type": (0.9, 0.6)}


def rules(**changes):
    base = {"group": FieldRule(), "priority": FieldRule(requires=["group"]), "type": FieldRule()}
    return {name: (FieldRule(**changes[name]) if name in changes else rule) for name, rule in base.items()}


def decide(
    preds, current=EMPTY, field_rules=None, thresholds=MODEL_THRESHOLDS, touched=False, suggest_only=None
):
    predictions = {field: Prediction(label, p) for field, (label, p) in preds.items()}
    return decide_ticket(
        current,
        predictions,
        rules=field_rules or rules(),
        specs=SPECS,
        thresholds=thresholds,
        suggest_only=suggest_only,
        touched=touched,
    )


def summary(decisions):
    return {f: (d.action, d.label, d.reason_code) for f, d in decisions.items()}


def test_thresholds_split_apply_suggest_and_skip():
    out = decide({"group": ("Billing", 0.85), "priority": ("High", 0.5), "type": ("Incident", 0.3)})
    assert summary(out) == {
        "group": ("apply", "Billing", "confident"),
        "priority": ("suggest", "High", "suggest_band"),
        "type": ("skip", None, "below_threshold"),
    }
    assert out["group"].apply_threshold == 0.8 and out["group"].suggest_threshold == 0.5
    assert all(d.reason for d in out.values())
    assert set(d.reason_code for d in out.values()) <= set(REASONS)


def test_a_confident_label_the_model_may_not_apply_is_only_suggested():
    """A rare class is learned and predicted, but written only where its own evidence allows."""
    rare = {"group": {"Technical Support": "3 training rows, fewer than min_examples_per_class (30)"}}
    out = decide(
        {"group": ("Technical Support", 0.97), "priority": ("High", 0.9), "type": ("Incident", 0.95)},
        suggest_only=rare,
    )
    assert summary(out)["group"] == ("suggest", "Technical Support", "class_suggest_only")
    assert "3 training rows" in out["group"].reason
    assert summary(out)["type"] == ("apply", "Incident", "confident")
    assert summary(out)["priority"] == (
        "suggest",
        "High",
        "requires_suggested",
    )  # its group is only suggested
    confident = decide({"group": ("Billing", 0.97)}, suggest_only=rare)
    assert summary(confident)["group"] == ("apply", "Billing", "confident")


def test_configured_thresholds_override_the_models_and_unreachable_ones_skip():
    out = decide(
        {"group": ("Billing", 0.85), "priority": ("High", 0.99), "type": ("Incident", 0.99)},
        field_rules=rules(group={"apply_threshold": 0.95, "suggest_threshold": 0.9}),
        thresholds={**MODEL_THRESHOLDS, "type": (None, None)},
    )
    assert out["group"].reason_code == "below_threshold" and out["group"].apply_threshold == 0.95
    assert out["type"].reason_code == "no_threshold"
    # priority is confident but requires group, which is not written and not set on the ticket
    assert summary(out)["priority"] == ("skip", None, "requires_unmet")


def test_labels_the_ticket_system_does_not_know_or_the_allow_list_forbids_are_never_written():
    out = decide(
        {"group": ("Shipping", 0.99), "priority": ("High", 0.99), "type": ("incident", 0.99)},
        field_rules=rules(type={"allowed": ["Question"]}),
    )
    assert out["group"].reason_code == "unknown_label" and out["group"].label is None
    assert out["type"].reason_code == "not_allowed"


def test_the_ticket_systems_spelling_is_used():
    out = decide({"group": ("billing", 0.99), "priority": ("high", 0.99), "type": ("INCIDENT", 0.99)})
    assert [d.label for d in out.values()] == ["Billing", "High", "Incident"]


@pytest.mark.parametrize(
    ("overwrite", "current_group", "expected"),
    [
        ("empty_or_default", None, "apply"),
        ("empty_or_default", 102, "has_value"),
        ("never", 102, "has_value"),
        ("always", 102, "apply"),
        ("always", 101, "already_set"),
    ],
)
def test_overwrite_rule(overwrite, current_group, expected):
    out = decide(
        {"group": ("Billing", 0.99)},
        current={**EMPTY, "group": current_group},
        field_rules=rules(group={"overwrite": overwrite}),
    )
    assert expected in (out["group"].action, out["group"].reason_code)


def test_default_priority_counts_as_empty_but_never_only_writes_truly_empty_fields():
    assert decide({"group": ("Billing", 0.9), "priority": ("High", 0.9)})["priority"].action == "apply"
    never = decide(
        {"group": ("Billing", 0.9), "priority": ("High", 0.9)},
        field_rules=rules(priority={"overwrite": "never", "requires": ["group"]}),
    )
    assert never["priority"].reason_code == "has_value"
    urgent = decide({"group": ("Billing", 0.9), "priority": ("High", 0.9)}, current={**EMPTY, "priority": 4})
    assert urgent["priority"].reason_code == "has_value" and urgent["priority"].current_label == "Urgent"


def test_a_default_on_a_ticket_changed_since_creation_counts_as_someones_choice():
    """Low on a ticket nobody touched is Freshdesk's default; after any change it may be an agent's."""
    preds = {"group": ("Billing", 0.9), "priority": ("High", 0.9)}
    assert decide(preds)["priority"].action == "apply"
    chosen = decide(preds, touched=True)["priority"]
    assert (chosen.action, chosen.reason_code, chosen.current_label) == ("skip", "has_value", "Low")
    assert decide(preds, touched=True)["group"].action == "apply"  # an empty field is still empty
    always = decide(preds, touched=True, field_rules=rules(priority={"overwrite": "always"}))
    assert always["priority"].action == "apply"


def test_fallback_is_written_when_the_model_is_unsure_and_must_be_a_known_choice():
    out = decide({"group": ("Billing", 0.3)}, field_rules=rules(group={"fallback": "technical support"}))
    assert summary(out)["group"] == ("apply", "Technical Support", "fallback")
    unknown = decide({"group": ("Billing", 0.3)}, field_rules=rules(group={"fallback": "Nowhere"}))
    assert unknown["group"].reason_code == "unknown_label"


def test_requires_is_met_by_a_group_already_on_the_ticket_and_downgraded_by_a_suggested_one():
    preds = {"group": ("Billing", 0.6), "priority": ("High", 0.9)}
    assert summary(decide(preds))["priority"] == ("suggest", "High", "requires_suggested")
    set_by_agent = decide(preds, current={**EMPTY, "group": 102})
    assert set_by_agent["group"].reason_code == "has_value"
    assert summary(set_by_agent)["priority"] == ("apply", "High", "confident")


def test_requirement_chains_propagate():
    field_rules = rules(type={"requires": ["priority"]})
    out = decide(
        {"group": ("Billing", 0.1), "priority": ("High", 0.9), "type": ("Incident", 0.95)},
        field_rules=field_rules,
    )
    assert out["priority"].reason_code == "requires_unmet"
    assert out["type"].reason_code == "requires_unmet"


def test_missing_predictions_and_fields_are_reported_and_disabled_fields_are_not_decided():
    specs_without_type = {k: v for k, v in SPECS.items() if k != "type"}
    out = decide_ticket(
        EMPTY,
        {"type": Prediction("Incident", 0.99)},
        rules=rules(priority={"enabled": False}),
        specs=specs_without_type,
        thresholds=MODEL_THRESHOLDS,
    )
    assert set(out) == {"group", "type"}
    assert out["group"].reason_code == "no_prediction"
    assert out["type"].reason_code == "unknown_field"
