"""Turn labelled texts into a seeded account: resolved history, open tickets to triage, and the rest.

History tickets carry the agents' values (group, priority, type, product) and status 4 or 5;
some tickets are in progress (3, 6, 7), some spam, some deleted. Open tickets to triage are the
newest: status 2, no group, the default priority Low, no type, no product (unless
``open_preset_fraction`` gives some values set by their requester or an agent: :mod:`presets`);
their true labels are returned separately and never rendered by the API. Display ids follow
creation time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from triage.simulator.account import PRIORITIES, Account, build_account
from triage.simulator.config import SimulatorConfig
from triage.simulator.dataset import load_labelled
from triage.simulator.generator import GROUPS, PRODUCTS, TYPES, LabelledText, generate_tickets
from triage.simulator.presets import preset_open_ticket
from triage.simulator.store import ChangeRecord
from triage.simulator.tickets import StoredTicket

_SOURCES = (1, 2, 3, 7)
_SOURCE_WEIGHTS = (0.6, 0.25, 0.1, 0.05)
_HISTORY_TAGS = ("vip", "follow-up", "callback", "newsletter", "billing-review")


@dataclass
class Seed:
    account: Account
    tickets: list[StoredTicket]
    truth: dict[int, dict[str, str]]
    #: The tags an agent would give each open ticket (hidden, like ``truth``).
    true_tags: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: What requesters and agents set on open tickets before triage (``open_preset_fraction``).
    changes: list[ChangeRecord] = field(default_factory=list)


def labelled_texts(config: SimulatorConfig) -> tuple[list[LabelledText], list[LabelledText]]:
    """The texts to seed with and the data file's unused rows (for tickets added later).

    With ``data`` the seeded texts are a seeded sample of the file's rows (all of them when
    ``tickets`` is ``None``); otherwise they are generated and nothing is left over.
    """
    if config.data is None:
        return list(generate_tickets(config.tickets or 2000, seed=config.seed)), []
    rows = load_labelled(config.data)
    if config.tickets is None:
        return rows, []
    if config.tickets > len(rows):
        raise ValueError(f"{config.data} has {len(rows)} rows; cannot seed {config.tickets} tickets from it")
    chosen = set(random.Random(config.seed).sample(range(len(rows)), config.tickets))
    seeded = [row for i, row in enumerate(rows) if i in chosen]
    unused = [row for i, row in enumerate(rows) if i not in chosen]
    return seeded, unused


def _label_sets(texts: list[LabelledText], generated: bool) -> tuple[list[str], list[str], list[str]]:
    if generated:
        return list(GROUPS), list(TYPES), list(PRODUCTS)
    groups = sorted({t.group for t in texts})
    types = sorted({t.type for t in texts})
    products = sorted({t.product for t in texts if t.product})
    return groups, types, products


def build_seed(config: SimulatorConfig, now: int, texts: list[LabelledText] | None = None) -> Seed:
    """The account and its tickets for ``config``, as of ``now`` (epoch seconds)."""
    texts = texts if texts is not None else labelled_texts(config)[0]
    if config.open_tickets > len(texts):
        raise ValueError(f"open_tickets={config.open_tickets} exceeds the {len(texts)} tickets available")
    rng = random.Random(config.seed + 1)
    groups, types, products = _label_sets(texts, config.data is None)
    account = build_account(
        groups,
        types,
        products,
        contacts=max(20, len(texts) // 8),
        created_at=now - (config.history_days + 30) * 86400,
        seed=config.seed,
        required_for_agents=config.required_for_agents,
        required_for_closure=config.required_for_closure,
    )
    open_window = max(60, int(config.open_within_hours * 3600))
    history_start = now - config.history_days * 86400
    history_end = now - open_window
    kinds = ["open"] * config.open_tickets + ["history"] * (len(texts) - config.open_tickets)
    rng.shuffle(kinds)  # which texts become open is random; their ids still follow creation time
    created: list[tuple[int, int]] = []
    for index, kind in enumerate(kinds):
        if kind == "open":
            moment = rng.randint(now - open_window, now - 30)
        else:
            moment = rng.randint(history_start, max(history_start, history_end))
        created.append((moment, index))
    created.sort()

    tickets: list[StoredTicket] = []
    truth: dict[int, dict[str, str]] = {}
    true_tags: dict[int, tuple[str, ...]] = {}
    changes: list[ChangeRecord] = []
    preset_rng = random.Random(config.seed + 5)  # its own stream: the rest of the seed stays as it was
    contact_ids = list(account.contacts)
    agents_by_group: dict[int, list[int]] = {}
    for agent in account.agents.values():
        if agent.id == account.me:
            continue
        for gid in agent.group_ids:
            agents_by_group.setdefault(gid, []).append(agent.id)
    for display_id, (created_at, index) in enumerate(created, start=1):
        text, kind = texts[index], kinds[index]
        requester = account.contacts[rng.choice(contact_ids)]
        group_id = account.group_id(text.group)
        priority = PRIORITIES[text.priority]
        source = rng.choices(_SOURCES, _SOURCE_WEIGHTS)[0]
        ticket = untriaged_ticket(
            display_id, text, account, requester.id, created_at=created_at, source=source
        )
        if kind == "open":
            truth[display_id] = true_labels(text)
            true_tags[display_id] = text.tags
            if preset_rng.random() < config.open_preset_fraction:
                changes += preset_open_ticket(ticket, text, account, preset_rng, now)
        else:
            _fill_history(ticket, text, group_id, priority, rng, agents_by_group, now, config)
        tickets.append(ticket)
    changes.sort(key=lambda record: record.time)
    return Seed(account=account, tickets=tickets, truth=truth, true_tags=true_tags, changes=changes)


def untriaged_ticket(
    ticket_id: int, text: LabelledText, account: Account, requester_id: int, *, created_at: int, source: int
) -> StoredTicket:
    """A ticket as it arrives: open, no group, the default priority Low, no type, empty custom fields.

    Its due dates follow that priority, as Freshdesk's SLA would set them, so they say nothing of
    the hidden true priority.
    """
    requester = account.contacts[requester_id]
    due_by, fr_due_by = sla_due(created_at, 1)
    return StoredTicket(
        id=ticket_id,
        subject=text.subject,
        description_text=text.body,
        status=2,
        priority=1,
        group_id=None,
        type=None,
        responder_id=None,
        requester_id=requester.id,
        company_id=requester.company_id,
        source=source,
        created_at=created_at,
        updated_at=created_at,
        due_by=due_by,
        fr_due_by=fr_due_by,
        custom_fields=dict.fromkeys(account.custom_fields),
        language=text.language,
        status_updated_at=created_at,
    )


def sla_due(created_at: int, priority: int) -> tuple[int, int]:
    """``(due_by, fr_due_by)`` for a ticket of ``priority`` (1-4): higher priorities are due sooner."""
    return created_at + 86400 * (4 - min(priority, 3)), created_at + 3600 * (8 - 2 * priority)


def true_labels(text: LabelledText) -> dict[str, str]:
    """The hidden labels of an open ticket (what an agent would set), for scoring only."""
    labels = {"group": text.group, "priority": text.priority, "type": text.type}
    if text.product:
        labels["cf_product"] = text.product
    return labels


def _fill_history(
    ticket: StoredTicket,
    text: LabelledText,
    group_id: int,
    priority: int,
    rng: random.Random,
    agents_by_group: dict[int, list[int]],
    now: int,
    config: SimulatorConfig,
) -> None:
    """Give a non-open ticket the agents' values and a later status, spam or deleted flag."""
    ticket.group_id = group_id
    ticket.priority = priority
    ticket.due_by, ticket.fr_due_by = sla_due(ticket.created_at, priority)
    ticket.type = text.type
    ticket.responder_id = rng.choice(agents_by_group[group_id])
    ticket.custom_fields["cf_product"] = text.product
    if text.group in ("Shipping", "Billing") and rng.random() < 0.4:
        ticket.custom_fields["cf_order_number"] = f"ORD-{rng.randint(100000, 999999)}"
    extra = [rng.choice(_HISTORY_TAGS)] if rng.random() < 0.15 else []
    ticket.tags = [*text.tags, *(tag for tag in extra if tag not in text.tags)]
    handled = min(now - 1, ticket.created_at + int(rng.expovariate(1 / 30) * 3600) + 60)
    ticket.agent_responded_at = min(handled, ticket.created_at + rng.randint(300, 8 * 3600))
    ticket.updated_at = handled
    ticket.status_updated_at = handled
    roll = rng.random()
    if roll < config.spam_fraction:
        ticket.spam = True
    elif roll < config.spam_fraction + config.deleted_fraction:
        ticket.deleted = True
    elif roll < config.spam_fraction + config.deleted_fraction + 0.08:
        ticket.status = rng.choice((3, 6, 7))
    else:
        ticket.status = 4 if rng.random() < 0.6 else 5
        ticket.resolved_at = handled
        if ticket.status == 5:
            ticket.closed_at = handled
