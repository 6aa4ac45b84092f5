"""FreshdeskConfig validation and construction through settings and the adapter registry."""

from __future__ import annotations

import pytest
from freshdesk_fakes import API_KEY
from pydantic import ValidationError

from triage.adapters.freshdesk import FreshdeskAdapter, FreshdeskConfig
from triage.adapters.freshdesk.config import TICKET_UPDATE, TICKETS_LIST
from triage.adapters.registry import build_adapter
from triage.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    "domain", ["acme", "ACME", "acme.freshdesk.com", "https://acme.freshdesk.com/", " acme "]
)
def test_domain_forms_resolve_to_the_api_base(domain):
    config = FreshdeskConfig(freshdesk_domain=domain, freshdesk_api_key=API_KEY)
    assert config.api_base == "https://acme.freshdesk.com/api/v2"


@pytest.mark.parametrize("domain", ["support.acme.com", "acme corp", "-acme", "acme.freshdesk.com/x/y", ""])
def test_bad_domains_are_refused_with_guidance(domain):
    with pytest.raises(ValidationError, match=r"subdomain, e\.g\. 'acme'"):
        FreshdeskConfig(freshdesk_domain=domain, freshdesk_api_key=API_KEY)


def test_missing_key_says_to_set_the_environment_variable():
    with pytest.raises(ValidationError, match="FRESHDESK_API_KEY"):
        FreshdeskConfig(freshdesk_domain="acme")
    with pytest.raises(ValidationError, match="FRESHDESK_API_KEY"):
        FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key="   ")


def test_base_url_overrides_the_domain_and_refuses_credentials():
    config = FreshdeskConfig(base_url="http://127.0.0.1:8765/api/v2/", freshdesk_api_key=API_KEY)
    assert config.api_base == "http://127.0.0.1:8765/api/v2"
    with pytest.raises(ValidationError, match="must not carry credentials"):
        FreshdeskConfig(base_url=f"http://{API_KEY}:X@127.0.0.1/api/v2", freshdesk_api_key=API_KEY)


def test_a_domain_or_base_url_is_required():
    with pytest.raises(ValidationError, match="freshdesk_domain"):
        FreshdeskConfig(freshdesk_api_key=API_KEY)


def test_unknown_keys_are_refused():
    with pytest.raises(ValidationError, match="Extra inputs"):
        FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY, per_page=500)


def test_plan_limits_and_overrides():
    growth = FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY).rate_limits()
    assert (growth.total, growth.sublimits[TICKETS_LIST], growth.sublimits[TICKET_UPDATE]) == (200, 20, 80)
    tuned = FreshdeskConfig(
        freshdesk_domain="acme",
        freshdesk_api_key=API_KEY,
        plan="pro",
        rate_limit_tickets_list=7,
        rate_window_seconds=2,
    ).rate_limits()
    assert (tuned.total, tuned.sublimits[TICKETS_LIST], tuned.window_seconds) == (400, 7, 2)
    with pytest.raises(ValidationError, match="rate_limit_total"):
        FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY, plan="custom")


def test_the_key_never_shows_in_repr_or_dumps():
    config = FreshdeskConfig(freshdesk_domain="acme", freshdesk_api_key=API_KEY)
    assert API_KEY not in repr(config) and API_KEY not in str(config.model_dump())
    assert API_KEY not in config.model_dump_json()


async def test_built_from_settings_with_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("FRESHDESK_API_KEY", API_KEY)
    monkeypatch.setenv("TRIAGE_TICKET_SYSTEM__FRESHDESK_DOMAIN", "acme")
    adapter = build_adapter(load_settings().ticket_system)
    try:
        assert isinstance(adapter, FreshdeskAdapter)
        assert adapter.config.api_base == "https://acme.freshdesk.com/api/v2"
        assert API_KEY not in repr(adapter) and API_KEY not in repr(adapter.client)
    finally:
        await adapter.aclose()


def test_registry_errors_name_the_key_and_never_echo_it(monkeypatch):
    monkeypatch.setenv("TRIAGE_TICKET_SYSTEM__FRESHDESK_DOMAIN", "not a domain")
    monkeypatch.setenv("TRIAGE_TICKET_SYSTEM__FRESHDESK_API_KEY", API_KEY + " bad")
    with pytest.raises(ConfigError) as info:
        build_adapter(load_settings().ticket_system)
    message = str(info.value)
    assert "ticket_system.freshdesk_domain" in message and "ticket_system.freshdesk_api_key" in message
    assert API_KEY not in message


def test_registry_says_where_the_key_comes_from(monkeypatch):
    monkeypatch.setenv("TRIAGE_TICKET_SYSTEM__FRESHDESK_DOMAIN", "acme")
    with pytest.raises(ConfigError, match=r"ticket_system\.freshdesk_api_key: .*FRESHDESK_API_KEY"):
        build_adapter(load_settings().ticket_system)
