"""Freshdesk adapter: reads tickets incrementally, maps labels to Freshdesk's values, writes safely.

Registered as the ``freshdesk`` entry point of the ``triage.adapters`` group.
"""

from adapters.freshdesk.adapter import FreshdeskAdapter
from adapters.freshdesk.client import ResponseInfo
from adapters.freshdesk.config import FreshdeskConfig
from adapters.freshdesk.search import SearchTooBroadError

__all__ = ["FreshdeskAdapter", "FreshdeskConfig", "ResponseInfo", "SearchTooBroadError"]
