"""Freshdesk adapter: reads tickets incrementally, maps labels to Freshdesk's values, writes safely.

Registered as the ``freshdesk`` entry point of the ``triage.adapters`` group.
"""

from triage.adapters.freshdesk.adapter import FreshdeskAdapter
from triage.adapters.freshdesk.client import ResponseInfo
from triage.adapters.freshdesk.config import FreshdeskConfig
from triage.adapters.freshdesk.search import SearchTooBroadError

__all__ = ["FreshdeskAdapter", "FreshdeskConfig", "ResponseInfo", "SearchTooBroadError"]
