"""A local Freshdesk: a real HTTP server that behaves like Freshdesk's REST API v2 for everything
triage uses (auth, list/search/show/update, notes, bulk update and jobs, field metadata, rate
limits, errors), seeded with labelled tickets whose true labels it keeps hidden.

    from triage.simulator import SimulatorConfig, run_simulator

    with run_simulator(SimulatorConfig(tickets=1000, open_tickets=100)) as sim:
        sim.base_url, sim.api_key      # point a Freshdesk client here
        sim.truth()                    # hidden labels of the open tickets
        sim.writes                     # every write request received
"""

from triage.simulator.api import ApiRequest
from triage.simulator.config import PLAN_LIMITS, FaultRule, RateLimits, SimulatorConfig
from triage.simulator.dataset import DatasetError
from triage.simulator.responses import ApiResponse
from triage.simulator.server import run_simulator, run_simulator_async, serve_forever
from triage.simulator.simulator import Simulator
from triage.simulator.store import ChangeRecord, WriteRecord

__all__ = [
    "PLAN_LIMITS",
    "ApiRequest",
    "ApiResponse",
    "ChangeRecord",
    "DatasetError",
    "FaultRule",
    "RateLimits",
    "Simulator",
    "SimulatorConfig",
    "WriteRecord",
    "run_simulator",
    "run_simulator_async",
    "serve_forever",
]
