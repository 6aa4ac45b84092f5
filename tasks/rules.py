"""Per-field decision rules: what is safe to write, what to suggest, and why. Pure functions.

For one ticket and one field the rules run in this order, and the first that settles it gives the
reason code:

1. ``no_prediction`` - the model has no head for the field (or did not predict this ticket).
2. ``unknown_field`` - the ticket system reports no such writable field.
3. Thresholds: ``confident`` (probability >= apply threshold: apply), ``suggest_band`` (>= suggest
   threshold: suggest), else ``fallback`` (apply the configured fallback value) or
   ``below_threshold`` / ``no_threshold`` (skip). A confident label the model may not apply (too
   little evidence of its own: model.json's ``suggest_only``) is only suggested: ``class_suggest_only``.
4. ``unknown_label`` / ``not_allowed`` - the value is not one of the ticket system's choices, or not
   in the field's allow-list: never sent.
5. ``already_set`` (the ticket already has this value) / ``has_value`` (it has another value the
   overwrite rule protects). A field's default (priority Low) counts as unset only on a ticket
   nobody changed since it was created: once anything changed it (``updated_at`` past
   ``created_at``: an agent's edit, a reply, a note), the default may be an agent's deliberate
   choice, and Freshdesk keeps no record that tells the two apart.
6. Consistency (``FieldRule.requires``): ``requires_unmet`` when a required field is neither written
   in this decision nor already set on the ticket; ``requires_suggested`` downgrades an apply to a
   suggestion when the required field is only suggested.

Tags (a model with the multi-label tags head, :mod:`triage.models.tags`) are decided per tag by
:func:`decide_tags`: a tag at or above its own apply threshold is added (``confident``), one only
suggest-only or in its suggest band is suggested; a tag the ticket already has is never proposed
(``already_set``); tags below their thresholds give no decision row.

The action does not depend on the run mode: in shadow mode decisions say what *would* be done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from triage.adapters.base import FieldSpec
from triage.models.tags import TAGS
from triage.settings import FieldRule
from triage.tasks.snapshots import label_of

Action = Literal["apply", "suggest", "skip"]

#: Every reason code with what it means (docs/safe-writes.md's reason-code table is generated from this).
REASONS: dict[str, str] = {
    "confident": "probability reached the apply threshold",
    "suggest_band": "probability reached the suggest threshold but not the apply threshold",
    "class_suggest_only": "probability reached the apply threshold, but the model has too little evidence "
    "for this label to write it (too few training rows, or its own hold-out precision below the target): "
    "only suggested",
    "fallback": "no label reached the apply threshold; the configured fallback value is used",
    "below_threshold": "probability below the thresholds",
    "no_threshold": "no threshold configured and none reaches the model's target precision",
    "no_prediction": "the model made no prediction for this field",
    "unknown_field": "the ticket system reports no such writable field",
    "unknown_label": "the ticket system does not know this value: it is never sent",
    "not_allowed": "the value is not in the field's allow-list",
    "already_set": "the ticket already has this value",
    "has_value": "the ticket has another value and the overwrite rule protects it",
    "requires_unmet": "a field this one requires is neither written nor set",
    "requires_suggested": "a field this one requires is only suggested, so this is only suggested",
}


@dataclass(frozen=True)
class Prediction:
    """The model's best label for one field, with its probability."""

    label: str
    probability: float


@dataclass(frozen=True)
class Decision:
    """What to do with one field of one ticket, and why."""

    field: str
    action: Action
    label: str | None
    predicted_label: str | None
    probability: float | None
    apply_threshold: float | None
    suggest_threshold: float | None
    current_label: str | None
    reason_code: str
    reason: str


Thresholds = Mapping[str, tuple[float | None, float | None]]


def decide_tags(
    current: Sequence[str],
    ranked: Sequence[Prediction],
    *,
    thresholds: Thresholds,
    suggest_only: Mapping[str, str],
) -> list[Decision]:
    """Decisions for the tags predicted for one ticket (field ``tags``, one per tag reaching a threshold).

    ``current`` are the ticket's tags, ``ranked`` each tag's own probability, ``thresholds`` per tag
    (apply, suggest) and ``suggest_only`` the tags never added (model.json's ``tags`` section).
    Tags are compared ignoring case, as Freshdesk does.
    """
    has = {tag.lower() for tag in current}
    out = []
    for prediction in ranked:
        tag, p = prediction.label, prediction.probability
        apply_t, suggest_t = thresholds.get(tag, (None, None))
        if not any(t is not None and p >= t for t in (apply_t, suggest_t)):
            continue
        base = Decision(TAGS, "skip", None, tag, p, apply_t, suggest_t, None, "", "")
        if tag.lower() in has:
            out.append(
                replace(
                    base, current_label=tag, reason_code="already_set", reason=f"the ticket has tag {tag!r}"
                )
            )
        elif apply_t is not None and p >= apply_t and tag in suggest_only:
            why = f"tag {tag!r} at {p:.2f} >= apply threshold {apply_t:.2f}, never added: {suggest_only[tag]}"
            out.append(
                replace(base, action="suggest", label=tag, reason_code="class_suggest_only", reason=why)
            )
        elif apply_t is not None and p >= apply_t:
            why = f"tag {tag!r} at {p:.2f} >= apply threshold {apply_t:.2f}"
            out.append(replace(base, action="apply", label=tag, reason_code="confident", reason=why))
        else:
            why = f"tag {tag!r} at {p:.2f} >= suggest threshold {_fmt(suggest_t)}, < apply {_fmt(apply_t)}"
            out.append(replace(base, action="suggest", label=tag, reason_code="suggest_band", reason=why))
    return out


def decide_ticket(
    current: Mapping[str, Any],
    predictions: Mapping[str, Prediction],
    *,
    rules: Mapping[str, FieldRule],
    specs: Mapping[str, FieldSpec],
    thresholds: Thresholds,
    suggest_only: Mapping[str, Mapping[str, str]] | None = None,
    touched: bool = False,
) -> dict[str, Decision]:
    """Decisions for every enabled field of one ticket.

    ``current`` maps field name -> the ticket's native value (group id, priority int, type, cf value);
    ``thresholds`` maps field -> the model's own (apply, suggest) thresholds, which a rule's explicit
    thresholds override; ``suggest_only`` maps field -> {label: why} for labels the model may only
    suggest, never apply; ``touched`` says the ticket changed since it was created, so its default
    values may have been chosen (they are then protected like any other value).
    """
    decisions = {
        name: _decide_field(
            name,
            current.get(name),
            predictions.get(name),
            rule,
            specs.get(name),
            thresholds.get(name),
            (suggest_only or {}).get(name, {}),
            touched=touched,
        )
        for name, rule in rules.items()
        if rule.enabled
    }
    return _apply_requirements(decisions, current, rules, specs, touched=touched)


def _decide_field(
    name: str,
    native: Any,
    prediction: Prediction | None,
    rule: FieldRule,
    spec: FieldSpec | None,
    model_thresholds: tuple[float | None, float | None] | None,
    suggest_only: Mapping[str, str],
    *,
    touched: bool,
) -> Decision:
    model_apply, model_suggest = model_thresholds or (None, None)
    apply_t = rule.apply_threshold if rule.apply_threshold is not None else model_apply
    suggest_t = rule.suggest_threshold if rule.suggest_threshold is not None else model_suggest
    current_label = _label_of(spec, native)
    base = Decision(
        field=name,
        action="skip",
        label=None,
        predicted_label=prediction.label if prediction else None,
        probability=prediction.probability if prediction else None,
        apply_threshold=apply_t,
        suggest_threshold=suggest_t,
        current_label=current_label,
        reason_code="",
        reason="",
    )

    def skip(code: str, detail: str) -> Decision:
        return replace(base, action="skip", reason_code=code, reason=detail)

    if prediction is None:
        return skip("no_prediction", f"the model made no prediction for {name}")
    if spec is None:
        return skip("unknown_field", f"the ticket system reports no writable field {name!r}")

    p, best = prediction.probability, prediction.label
    action: Action
    if apply_t is not None and p >= apply_t and best in suggest_only:
        action, value = "suggest", best
        code = "class_suggest_only"
        why = f"{best!r} at {p:.2f} >= apply threshold {apply_t:.2f}, never applied: {suggest_only[best]}"
    elif apply_t is not None and p >= apply_t:
        action, value = "apply", best
        code, why = "confident", f"{best!r} at {p:.2f} >= apply threshold {apply_t:.2f}"
    elif rule.fallback is not None:
        action, value = "apply", rule.fallback
        code, why = "fallback", f"best {best!r} at {p:.2f} below apply threshold {_fmt(apply_t)}: fallback"
    elif suggest_t is not None and p >= suggest_t:
        action, value = "suggest", best
        code = "suggest_band"
        why = f"{best!r} at {p:.2f} >= suggest threshold {suggest_t:.2f}, < apply {_fmt(apply_t)}"
    elif apply_t is None and suggest_t is None:
        return skip("no_threshold", f"no threshold for {name}: the model reaches no target precision")
    else:
        return skip(
            "below_threshold", f"{best!r} at {p:.2f} below thresholds {_fmt(suggest_t)}/{_fmt(apply_t)}"
        )

    if not spec.knows(value):
        return skip("unknown_label", f"{value!r} is not one of the ticket system's {name} choices")
    value = spec.canonical(value)
    if rule.allowed is not None and value.lower() not in {a.lower() for a in rule.allowed}:
        return skip("not_allowed", f"{value!r} is not in fields.{name}.allowed")
    if current_label is not None and current_label == value:
        return skip("already_set", f"the ticket already has {name} {value!r}")
    if not _may_overwrite(rule, spec, native, touched=touched):
        return skip(
            "has_value", f"the ticket has {name} {current_label or native!r} (overwrite: {rule.overwrite})"
        )
    return replace(base, action=action, label=value, reason_code=code, reason=why)


def _apply_requirements(
    decisions: dict[str, Decision],
    current: Mapping[str, Any],
    rules: Mapping[str, FieldRule],
    specs: Mapping[str, FieldSpec],
    *,
    touched: bool,
) -> dict[str, Decision]:
    """Downgrade writes whose required fields are not satisfied, until nothing changes (chains).

    A write is skipped when any field it requires is unmet, else only suggested when any is only
    suggested; a write already downgraded to a suggestion is still skipped once a requirement turns
    out unmet. So the outcome does not depend on the order of the fields or of their ``requires``.
    """
    changed = True
    while changed:
        changed = False
        for name, decision in decisions.items():
            if decision.action != "apply" and decision.reason_code != "requires_suggested":
                continue  # only writes are downgraded (a suggestion in its own right stays one)
            states = {
                other: _requirement_state(other, decisions, current, specs, touched=touched)
                for other in sorted(rules[name].requires)
            }
            unmet = [other for other, state in states.items() if state == "unmet"]
            suggested = [other for other, state in states.items() if state == "suggested"]
            if unmet:
                other = unmet[0]
                why = decisions[other].reason_code if other in decisions else "not triaged"
                decisions[name] = replace(
                    decision,
                    action="skip",
                    label=None,
                    reason_code="requires_unmet",
                    reason=f"{name} requires {other}, which is neither written nor set ({why})",
                )
            elif suggested and decision.action == "apply":
                decisions[name] = replace(
                    decision,
                    action="suggest",
                    reason_code="requires_suggested",
                    reason=f"{suggested[0]} is only suggested, so {name} {decision.label!r} is only suggested",
                )
            else:
                continue
            changed = True
    return decisions


def _requirement_state(
    other: str,
    decisions: Mapping[str, Decision],
    current: Mapping[str, Any],
    specs: Mapping[str, FieldSpec],
    *,
    touched: bool,
) -> Literal["met", "suggested", "unmet"]:
    decision = decisions.get(other)
    if decision is not None and (decision.action == "apply" or decision.reason_code == "already_set"):
        return "met"
    spec = specs.get(other)
    value = current.get(other)
    if value is not None and value != "" and (touched or spec is None or not spec.is_empty_or_default(value)):
        return "met"  # already set on the ticket, by an agent or earlier
    if decision is not None and decision.action == "suggest":
        return "suggested"
    return "unmet"


def _may_overwrite(rule: FieldRule, spec: FieldSpec, native: Any, *, touched: bool) -> bool:
    if rule.overwrite == "always":
        return True
    if native is None or native == "":
        return True
    return rule.overwrite == "empty_or_default" and not touched and spec.is_empty_or_default(native)


def _label_of(spec: FieldSpec | None, native: Any) -> str | None:
    if native is None or native == "":
        return None
    return label_of(spec, native) or str(native)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"
