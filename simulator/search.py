"""``GET /search/tickets``: a minimal Freshquery (§7): ``field:value``, ``AND``/``OR``, parentheses,
``:>``/``:<`` on numbers and dates, ``null``, single-quoted strings."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from triage.simulator.account import STATUSES, Account
from triage.simulator.responses import (
    INVALID_DATE,
    QUERY_FORMAT_INVALID,
    field_error,
    invalid_field,
    one_of,
)
from triage.simulator.tickets import StoredTicket
from triage.simulator.timeutil import parse_day

MAX_QUERY_LENGTH = 512
PAGE_SIZE = 30
MAX_PAGE = 10

Predicate = Callable[[StoredTicket], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>AND|OR)(?=[\s()]|$)"
    r"|(?P<field>[A-Za-z_][A-Za-z0-9_]*):(?P<cmp>[<>])?(?P<value>'[^']*'|-?\d+|[A-Za-z_][\w.-]*)(?=[\s()]|$))"
)
_DATE_FIELDS = ("created_at", "updated_at", "due_by", "fr_due_by", "nr_due_by")
_INT_FIELDS = {"group_id": "group_id", "agent_id": "responder_id", "priority": "priority", "status": "status"}


class SearchError(Exception):
    """The query is invalid; ``errors`` are Freshdesk field errors."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__(errors)


@dataclass
class _Term:
    field: str
    cmp: str | None
    raw: str


def unquote_query(raw: str | None) -> str:
    """The query inside its mandatory double quotes; :class:`SearchError` if absent or too long."""
    if raw is None:
        raise SearchError([field_error("query", "Mandatory attribute missing", "missing_field")])
    if len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
        raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])
    inner = raw[1:-1]
    if len(inner) > MAX_QUERY_LENGTH:
        raise SearchError(
            [
                field_error(
                    "query",
                    f"Has {len(inner)} characters, it can have maximum of {MAX_QUERY_LENGTH} characters",
                )
            ]
        )
    return inner


def compile_query(text: str, account: Account) -> Predicate:
    """A predicate for ``text`` (without its quotes); :class:`SearchError` on bad syntax or values."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, account)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])
    if parser.errors:
        raise SearchError(parser.errors)
    return predicate


def _tokenize(text: str) -> list[object]:
    tokens: list[object] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])
        position = match.end()
        if match["lp"]:
            tokens.append("(")
        elif match["rp"]:
            tokens.append(")")
        elif match["op"]:
            tokens.append(match["op"])
        else:
            tokens.append(_Term(match["field"], match["cmp"], match["value"]))
    if not tokens:
        raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])
    return tokens


class _Parser:
    """``expr := and (OR and)*``, ``and := atom (AND atom)*``, ``atom := ( expr ) | term``."""

    def __init__(self, tokens: list[object], account: Account) -> None:
        self.tokens = tokens
        self.position = 0
        self.account = account
        self.errors: list[dict[str, str]] = []

    def _peek(self) -> object:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def expression(self) -> Predicate:
        parts = [self._conjunction()]
        while self._peek() == "OR":
            self.position += 1
            parts.append(self._conjunction())
        return parts[0] if len(parts) == 1 else (lambda t: any(p(t) for p in parts))

    def _conjunction(self) -> Predicate:
        parts = [self._atom()]
        while self._peek() == "AND":
            self.position += 1
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else (lambda t: all(p(t) for p in parts))

    def _atom(self) -> Predicate:
        token = self._peek()
        self.position += 1
        if token == "(":
            inner = self.expression()
            if self._peek() != ")":
                raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])
            self.position += 1
            return inner
        if isinstance(token, _Term):
            return self._term(token)
        raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])

    def _fail(self, error: dict[str, str]) -> Predicate:
        self.errors.append(error)
        return lambda t: False

    def _term(self, term: _Term) -> Predicate:
        name, raw, cmp = term.field, term.raw, term.cmp
        custom = self.account.custom_fields.get(name)
        if (
            name not in _DATE_FIELDS
            and name not in _INT_FIELDS
            and name not in ("type", "tag")
            and custom is None
        ):
            return self._fail(invalid_field(name))
        if name in _INT_FIELDS:
            return self._int_term(name, raw, cmp)
        quoted = raw.startswith("'")
        if (cmp is not None and name not in _DATE_FIELDS) or (not quoted and raw != "null"):
            raise SearchError([field_error("query", QUERY_FORMAT_INVALID)])  # strings must be quoted
        value = raw[1:-1]
        if name in _DATE_FIELDS:
            if raw == "null":
                return lambda t: False  # these dates are always set in the simulator
            day = parse_day(value)
            if day is None:
                return self._fail(field_error(name, INVALID_DATE.format(accepted="yyyy-mm-dd")))
            attr = "due_by" if name == "nr_due_by" else name
            return _compare(lambda t: getattr(t, attr) // 86400 * 86400, cmp, day)
        if name == "type":
            if raw == "null":
                return lambda t: t.type is None
            canonical = self.account.canonical_type(value)
            if canonical is None:
                return self._fail(field_error("type", one_of(self.account.ticket_types)))
            return lambda t: t.type == canonical
        if name == "tag":
            if raw == "null":
                return lambda t: not t.tags
            return lambda t: any(tag.lower() == value.lower() for tag in t.tags)
        assert custom is not None
        if raw == "null":
            return lambda t: t.custom_fields.get(name) in (None, "")
        if custom.type == "custom_dropdown":
            choice = next((c for c in custom.choices if c.lower() == value.lower()), None)
            if choice is None:
                return self._fail(field_error(name, one_of(custom.choices)))
            return lambda t: t.custom_fields.get(name) == choice
        return lambda t: t.custom_fields.get(name) == value

    def _int_term(self, name: str, raw: str, cmp: str | None) -> Predicate:
        attr = _INT_FIELDS[name]
        if raw == "null" and cmp is None:
            return lambda t: getattr(t, attr) is None
        if not raw.lstrip("-").isdigit():
            return self._fail(field_error(name, "It should be a/an Positive Integer", "datatype_mismatch"))
        number = int(raw)
        allowed = {"priority": (1, 2, 3, 4), "status": tuple(STATUSES)}.get(name)
        if allowed and cmp is None and number not in allowed:
            return self._fail(field_error(name, one_of(allowed)))
        return _compare(lambda t: getattr(t, attr), cmp, number)


def _compare(get: Callable[[StoredTicket], int | None], cmp: str | None, value: int) -> Predicate:
    if cmp == ">":
        return lambda t: (v := get(t)) is not None and v >= value
    if cmp == "<":
        return lambda t: (v := get(t)) is not None and v <= value
    return lambda t: get(t) == value
