"""The admin API under ``/_simulator/`` (not Freshdesk's): read the write log and hidden labels,
change faults and rate limits, add tickets, edit as an agent, set agents to work, shift the clock,
reset. Basic auth with the API key;
never rate-limited, never faulted."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, TypeGuard

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from triage.simulator.config import RateLimits
from triage.simulator.simulator import Simulator, basic_username

PREFIX = "/_simulator"


class _BadRequest(Exception):
    pass


def build_admin_app(simulator: Simulator) -> Starlette:
    """A Starlette app exposing ``simulator``'s state over HTTP."""

    def authorised(request: Request) -> bool:
        return basic_username(request.headers.get("authorization", "")) == simulator.api_key

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise _BadRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object")
        return data

    def endpoint(handler: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"error": "Basic auth with the simulator's API key required"}, 401)
            try:
                return JSONResponse(await handler(request))
            except (_BadRequest, ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except KeyError as exc:
                return JSONResponse({"error": f"not found: {exc}"}, 404)

        return wrapped

    def since(request: Request) -> int:
        raw = request.query_params.get("since", "0")
        if not raw.isdigit():
            raise _BadRequest("since must be a non-negative integer")
        return int(raw)

    async def index(request: Request) -> Any:
        return {
            "base_url": simulator.base_url,
            "endpoints": [
                f"{PREFIX}/{name}"
                for name in (
                    "writes",
                    "changes",
                    "truth",
                    "labels",
                    "stats",
                    "faults",
                    "rate_limits",
                    "tickets",
                    "agents",
                    "clock",
                    "reset",
                )
            ],
        }

    async def writes(request: Request) -> Any:
        return [record.to_json() for record in simulator.writes[since(request) :]]

    async def changes(request: Request) -> Any:
        return [record.to_json() for record in simulator.changes[since(request) :]]

    async def truth(request: Request) -> Any:
        return {str(tid): labels for tid, labels in simulator.truth().items()}

    async def labels(request: Request) -> Any:
        return simulator.labels()

    async def stats(request: Request) -> Any:
        return simulator.stats()

    async def faults(request: Request) -> Any:
        if request.method == "POST":
            simulator.faults.inject(**await body_of(request))
        elif request.method == "DELETE":
            simulator.faults.clear()
        return simulator.faults.rules()

    async def rate_limits(request: Request) -> Any:
        data = await body_of(request)
        limits = RateLimits(**data["limits"]) if data.get("limits") else None
        simulator.set_rate_limits(data.get("plan"), limits=limits, window_seconds=data.get("window_seconds"))
        return {
            "plan": simulator.config.plan,
            "window_seconds": simulator.config.window_seconds,
            "limits": _limits(simulator),
        }

    async def add_tickets(request: Request) -> Any:
        count = (await body_of(request)).get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool):
            raise _BadRequest("count must be an integer")
        return {"ids": simulator.add_tickets(count)}

    async def ticket(request: Request) -> Any:
        return simulator.ticket(int(request.path_params["ticket_id"]))

    async def agent_edit(request: Request) -> Any:
        diff = simulator.agent_edit(int(request.path_params["ticket_id"]), **await body_of(request))
        return {"changes": {k: {"old": old, "new": new} for k, (old, new) in diff.items()}}

    async def agents(request: Request) -> Any:
        if request.method == "PUT":
            rate = (await body_of(request)).get("edits_per_minute")
            if not _is_number(rate):
                raise _BadRequest("edits_per_minute must be a number (0 stops the agents)")
            simulator.agents.start(rate)
        return simulator.agents_status()

    async def agents_edit(request: Request) -> Any:
        count = (await body_of(request)).get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            raise _BadRequest("count must be an integer within 1..10000")
        made = (simulator.random_agent_edit() for _ in range(count))
        return [record.to_json() for record in made if record is not None]

    async def clock(request: Request) -> Any:
        data = await body_of(request)
        if "offset" in data:
            if not _is_number(data["offset"]):
                raise _BadRequest("offset must be a number of seconds (negative: behind this machine)")
            simulator.set_clock_offset(data["offset"])
        seconds = data.get("advance", 0)
        if not _is_number(seconds) or seconds < 0:
            raise _BadRequest("advance must be a number of seconds >= 0")
        simulator.advance_clock(seconds)
        return {"offset_seconds": simulator.clock.offset}

    async def reset(request: Request) -> Any:
        simulator.reset()
        return {"tickets": len(simulator.ticket_ids())}

    routes = [
        Route(f"{PREFIX}/", endpoint(index)),
        Route(f"{PREFIX}/writes", endpoint(writes)),
        Route(f"{PREFIX}/changes", endpoint(changes)),
        Route(f"{PREFIX}/truth", endpoint(truth)),
        Route(f"{PREFIX}/labels", endpoint(labels)),
        Route(f"{PREFIX}/stats", endpoint(stats)),
        Route(f"{PREFIX}/faults", endpoint(faults), methods=["GET", "POST", "DELETE"]),
        Route(f"{PREFIX}/rate_limits", endpoint(rate_limits), methods=["PUT"]),
        Route(f"{PREFIX}/tickets", endpoint(add_tickets), methods=["POST"]),
        Route(f"{PREFIX}/tickets/{{ticket_id:int}}", endpoint(ticket)),
        Route(f"{PREFIX}/tickets/{{ticket_id:int}}/agent_edit", endpoint(agent_edit), methods=["POST"]),
        Route(f"{PREFIX}/agents", endpoint(agents), methods=["GET", "PUT"]),
        Route(f"{PREFIX}/agents/edit", endpoint(agents_edit), methods=["POST"]),
        Route(f"{PREFIX}/clock", endpoint(clock), methods=["POST"]),
        Route(f"{PREFIX}/reset", endpoint(reset), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _limits(simulator: Simulator) -> dict[str, Any] | None:
    limits = simulator.config.rate_limits()
    return None if limits is None else asdict(limits)
