"""A real Prefect server, `prefect` commands and process workers, as an operator runs them.

Used by the deployment tests (tests/flows/test_server_deployments.py, and the one server :func:`deployed`
serves to tests/flows/test_predict_pool.py and test_backfill_children.py) and the deployment benchmark
(bench/deployment_latency.py). Each server gets its own ``PREFECT_HOME`` and database: a PostgreSQL
database created for it (and dropped after) or a SQLite file. The environment of every process is
built from scratch here (no ``PREFECT_*`` of the calling process leaks in).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: The work pools of the flow tests' shared deployment server: the flows', and predict's (a GPU pool's stand-in).
POOL, GPU = "triage", "gpu"


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect settings or an API key, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FRESHDESK_", "TRIAGE_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _postgres(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A connection URL for the server: a new PostgreSQL database (dropped after), or a SQLite file."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
        return
    name = f"triage_prefect_{uuid.uuid4().hex[:10]}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def eventually(read, timeout: float):
    """``read()`` once a second until it returns something truthy or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


class _RetryingClient(httpx.Client):
    """The API called as Prefect's own client calls it: a 429, or a 503 from a server whose SQLite
    database is busy (a loaded machine), is retried with backoff rather than failing the test."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        for attempt in range(6):
            response = super().send(request, **kwargs)
            if response.status_code not in (429, 503) or attempt == 5:
                return response
            response.close()
            time.sleep(1 + 2 * attempt)
        raise AssertionError("unreachable")


class Server:
    """``prefect server start`` on its own port, home and database; ``api`` talks to its REST API."""

    def __init__(self, folder: Path, database_url: str, **settings: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.env = base_env(
            PREFECT_HOME=str(folder / "server-home"),
            PREFECT_API_DATABASE_CONNECTION_URL=database_url,
            PREFECT_UI_ENABLED="false",
            **settings,
        )
        self.log = folder / "server.log"
        self.process: subprocess.Popen | None = None
        self.api = _RetryingClient(base_url=self.url, timeout=30)

    def start(self, timeout: float = 180) -> Server:
        command = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.api.get("/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server not healthy after {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        self.api.close()

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a `prefect` command or worker using this server."""
        return base_env(PREFECT_API_URL=self.url, **extra)

    def prefect(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        """Run ``prefect --no-prompt ARGS`` from the repository root, as docs/operators.md ("Deployment") shows."""
        return subprocess.run(
            [PREFECT, "--no-prompt", *args],
            env=dict(env or self.client_env(PREFECT_HOME=str(self.folder / "cli-home"))),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- the REST API, as the UI uses it ------------------------------------------------------

    def post(self, path: str, body: Any = None) -> Any:
        response = self.api.post(path, json=body if body is not None else {})
        response.raise_for_status()
        return response.json() if response.content else None

    def deployment(self, name: str) -> dict[str, Any]:
        response = self.api.get(f"/deployments/name/{name}")
        response.raise_for_status()
        return response.json()

    def run_deployment(self, name: str, parameters: dict[str, Any] | None = None) -> httpx.Response:
        """Create a flow run of deployment ``flow/deployment`` (the UI's "Run"); the raw response."""
        deployment = self.deployment(name)
        return self.api.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters or {}}
        )

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = self.api.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        return response.json()

    def wait(self, run_id: str, timeout: float = 420, worker: Worker | None = None) -> dict[str, Any]:
        """Poll a flow run until it reaches a terminal state; the run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in TERMINAL:
                return run
            time.sleep(1)
        tail = worker.log.read_text()[-4000:] if worker else ""
        raise TimeoutError(f"flow run {run_id} still {run['state']['name']} after {timeout} s\n{tail}")

    def retry_from_ui(self, run_id: str) -> None:
        """Exactly what the UI's Retry button sends."""
        state = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}
        self.post(f"/flow_runs/{run_id}/set_state", {"state": state, "force": True})

    def crash(self, run_id: str, message: str) -> None:
        """Mark a run Crashed, as Prefect's zombie-run automation (flow heartbeats) or an operator does
        for a run whose worker died: its deployment's concurrency slot is released with it."""
        state = {"type": "CRASHED", "name": "Crashed", "message": message}
        self.post(f"/flow_runs/{run_id}/set_state", {"state": state, "force": True})

    def create_run(self, name: str, parameters: dict[str, Any], key: str) -> dict[str, Any]:
        """A flow run of deployment ``flow/deployment`` with an idempotency key (the same key gets the
        same run back); the run."""
        deployment = self.deployment(name)
        body = {"parameters": parameters, "idempotency_key": key}
        return self.post(f"/deployments/{deployment['id']}/create_flow_run", body)

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})

    def logs(self, run_id: str) -> list[str]:
        rows = self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return [row["message"] for row in rows]

    def flow_runs(
        self, deployment_id: str, state: str | None = None, *, besides: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """The runs of a deployment (only those in ``state``) but those in ``besides`` (earlier tests')."""
        body: dict[str, Any] = {"deployments": {"id": {"any_": [deployment_id]}}}
        if state:
            body["flow_runs"] = {"state": {"type": {"any_": [state]}}}
        return [run for run in self.post("/flow_runs/filter", body) if run["id"] not in besides]

    def run_ids(self, deployment_id: str) -> set[str]:
        """The ids of a deployment's runs so far (a test on a shared server then reads only its own)."""
        return {run["id"] for run in self.flow_runs(deployment_id)}


def ok(done: subprocess.CompletedProcess) -> str:
    """The output of a command that must have succeeded."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@contextmanager
def deployed(folder: Path, pool: str, predict_pool: str) -> Iterator[Server]:
    """A server (SQLite) with every deployment of prefect.yaml, as docs/operators.md ("Deployment") has an
    operator make it: process work pools ``pool`` for the flows and ``predict_pool`` for predict (one run at
    a time there, as on one GPU), then `prefect deploy --all`. The scheduled deployments are paused and
    their scheduled runs deleted: a test starts each run itself."""
    with database("sqlite", folder) as url:
        server = Server(folder, url).start()
        try:
            env = server.client_env(
                PREFECT_HOME=str(folder / "cli-home"),
                TRIAGE_WORK_POOL=pool,
                TRIAGE_PREDICT_WORK_POOL=predict_pool,
            )
            for name in dict.fromkeys((pool, predict_pool)):
                ok(server.prefect("work-pool", "create", name, "--type", "process", env=env))
            if predict_pool != pool:
                ok(server.prefect("work-pool", "set-concurrency-limit", predict_pool, "1", env=env))
            ok(server.prefect("deploy", "--all", env=env))
            for name in ("triage/hourly", "nightly/nightly"):
                deployment = server.deployment(name)
                server.api.patch(f"/deployments/{deployment['id']}", json={"paused": True}).raise_for_status()
                for run in server.flow_runs(deployment["id"], state="SCHEDULED"):
                    server.api.delete(f"/flow_runs/{run['id']}").raise_for_status()
            yield server
        finally:
            server.stop()


class Worker:
    """``prefect worker start --pool POOL`` with its own ``PREFECT_HOME`` (no local state shared)."""

    def __init__(self, server: Server, pool: str, name: str, **env: str) -> None:
        self.server, self.pool, self.name = server, pool, name
        self.log = server.folder / f"worker-{name}.log"
        home = server.folder / f"worker-{name}-home"
        self.env = server.client_env(
            PREFECT_HOME=str(home), PREFECT_WORKER_QUERY_SECONDS="1", TRIAGE_HOME=str(ROOT), **env
        )
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Worker:
        command = [PREFECT, "worker", "start", "--pool", self.pool, "--name", self.name]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)

    def kill(self) -> list[int]:
        """SIGKILL the worker and every process under it (its flow runs, in their own sessions or not),
        as a machine that is lost; returns their PIDs."""
        if self.process is None or self.process.poll() is not None:
            return []
        pids = [self.process.pid, *_descendants(self.process.pid)]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        return pids


def _descendants(pid: int) -> list[int]:
    """PIDs of every process under ``pid`` (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
