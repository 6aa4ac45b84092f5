"""Serve a :class:`Simulator` over real HTTP with uvicorn: in a background thread or in the foreground.

``/api/v2/...`` is the Freshdesk API (raw ASGI, so a fault can close the connection without an
answer); everything else goes to the Starlette admin app under ``/_simulator/``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

from triage.simulator.admin import build_admin_app
from triage.simulator.api import ApiRequest
from triage.simulator.config import SimulatorConfig
from triage.simulator.simulator import Simulator

API_PREFIX = "/api/v2"


class SimulatorApp:
    """The ASGI application: the Freshdesk API plus the admin app."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.admin = build_admin_app(simulator)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self._api(scope, receive, send)
        else:
            await self.admin(scope, receive, send)

    async def _api(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or "{}:{}".format(*scope["server"])
        request = ApiRequest(
            method=scope["method"],
            path=scope["path"][len(API_PREFIX) :] or "/",
            raw_query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=bytes(body),
            base_url=f"{scope.get('scheme', 'http')}://{host}{API_PREFIX}",
        )
        response = self.simulator.handle(request)
        if response.delay:
            await asyncio.sleep(response.delay)
        if response.drop:
            await _drop_connection(send)
            return
        raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        raw_headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": response.body})


async def _drop_connection(send: Any) -> None:
    """Close the TCP connection without sending anything (uvicorn's protocol object owns it)."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # not uvicorn's h11/httptools cycle: the best we can do is a broken answer
        raise ConnectionAbortedError("simulated dropped connection")
    transport.abort()
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # keep uvicorn from writing a 500 to the closed socket


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then (else +40 ms a request)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # accept connections from now on; they wait in the backlog until uvicorn serves
    return sock


def _uvicorn_server(simulator: Simulator, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        SimulatorApp(simulator),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        http="h11",
        date_header=False,  # the simulator sends its own, from its clock (which may be set off)
        loop="asyncio",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """uvicorn serving a simulator on its own thread and event loop."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        self.simulator = simulator
        self._socket = _bind(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = _uvicorn_server(simulator, "warning")
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="freshdesk-simulator",
            daemon=True,
        )

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout:
                raise RuntimeError("the simulator's HTTP server did not start")
            self._thread.join(0.01)
            waited += 0.01
        self.simulator.base_url = f"http://{self.host}:{self.port}{API_PREFIX}"
        self.simulator.agents.start(self.simulator.config.agent_edits_per_minute)

    def stop(self) -> None:
        self.simulator.agents.stop()
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


def _start(config: SimulatorConfig | None, overrides: dict[str, Any]) -> BackgroundServer:
    if config is not None and overrides:
        raise TypeError("pass either a SimulatorConfig or keyword settings, not both")
    config = config or SimulatorConfig(**overrides)
    server = BackgroundServer(Simulator(config), config.host, config.port)
    server.start()
    return server


@contextmanager
def run_simulator(config: SimulatorConfig | None = None, **settings: Any) -> Iterator[Simulator]:
    """Serve a simulated Freshdesk on ``127.0.0.1`` (a free port unless configured) in a thread.

    ``with run_simulator(SimulatorConfig(tickets=500, open_tickets=50)) as sim:`` yields the
    :class:`Simulator` with ``sim.base_url`` (``http://127.0.0.1:PORT/api/v2``) and ``sim.api_key``.
    Keyword settings are a shortcut for a config: ``run_simulator(tickets=100, plan="growth")``.
    Safe from async tests too: the server has its own thread and event loop.
    """
    server = _start(config, settings)
    try:
        yield server.simulator
    finally:
        server.stop()


@asynccontextmanager
async def run_simulator_async(
    config: SimulatorConfig | None = None, **settings: Any
) -> AsyncIterator[Simulator]:
    """:func:`run_simulator` for ``async with``: seeding and start-up run off the event loop."""
    server = await asyncio.to_thread(_start, config, settings)
    try:
        yield server.simulator
    finally:
        await asyncio.to_thread(server.stop)


def serve_forever(simulator: Simulator, host: str, port: int, on_ready: Any = None) -> None:
    """Serve in the foreground until Ctrl-C; ``on_ready(simulator)`` runs once the port is bound."""
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    simulator.base_url = f"http://{bound_host}:{bound_port}{API_PREFIX}"
    if on_ready is not None:
        on_ready(simulator)
    simulator.agents.start(simulator.config.agent_edits_per_minute)
    try:
        _uvicorn_server(simulator, "info").run(sockets=[sock])
    finally:
        simulator.agents.stop()
        sock.close()
