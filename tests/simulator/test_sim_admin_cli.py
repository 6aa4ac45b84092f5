"""The admin API under /_simulator/ and the ``triage simulator`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from triage.cli import app


@pytest.fixture
def admin(sim):
    root = sim.base_url.removesuffix("/api/v2") + "/_simulator"
    with httpx.Client(base_url=root, auth=(sim.api_key, "X")) as http:
        yield http


def test_admin_requires_the_api_key(sim):
    root = sim.base_url.removesuffix("/api/v2")
    assert httpx.get(f"{root}/_simulator/truth").status_code == 401
    assert httpx.get(f"{root}/_simulator/truth", auth=("nope", "X")).status_code == 401


def test_admin_reads_writes_truth_changes_and_stats(sim, client, admin):
    tid = min(sim.truth())
    client.put(f"/tickets/{tid}", json={"priority": 2})
    client.put(f"/tickets/{tid}", json={"priority": 9})
    writes = admin.get("/writes").json()
    assert [(w["status"], w["body"]) for w in writes] == [(200, {"priority": 2}), (400, {"priority": 9})]
    assert [w["status"] for w in admin.get("/writes", params={"since": 1}).json()] == [400]
    assert admin.get("/changes").json()[-1]["changes"] == {"priority": {"old": 1, "new": 2}}
    truth = admin.get("/truth").json()
    assert truth == {str(k): v for k, v in sim.truth().items()}
    stats = admin.get("/stats").json()
    assert stats["by_status"] == {"200": 1, "400": 1} and stats["writes"] == 2
    assert admin.get("/labels").json()["priority"] == ["Low", "Medium", "High", "Urgent"]
    assert admin.get("/writes", params={"since": "x"}).status_code == 400


def test_admin_changes_faults_limits_tickets_and_resets(sim, client, admin):
    rules = admin.post("/faults", json={"kind": "error", "next": 1, "status": 502}).json()
    assert rules[0]["kind"] == "error" and rules[0]["status"] == 502
    assert client.get("/agents/me").status_code == 502
    assert admin.post("/faults", json={"kind": "explode"}).status_code == 400
    admin.delete("/faults")
    limits = admin.put(
        "/rate_limits", json={"limits": {"total": 5, "tickets_list": 1}, "window_seconds": 30}
    ).json()
    assert limits["plan"] == "custom" and limits["limits"]["tickets_list"] == 1
    assert client.get("/tickets").status_code == 200 and client.get("/tickets").status_code == 429
    admin.put("/rate_limits", json={"plan": "unlimited"})
    ids = admin.post("/tickets", json={"count": 2}).json()["ids"]
    assert set(ids) <= set(sim.truth())
    edited = admin.post(f"/tickets/{ids[0]}/agent_edit", json={"group": "Sales", "type": "Question"}).json()
    assert set(edited["changes"]) == {"group_id", "type"}
    assert admin.post(f"/tickets/{ids[0]}/agent_edit", json={"colour": "red"}).status_code == 400
    assert admin.post("/tickets/999999/agent_edit", json={"type": "Question"}).status_code == 404
    assert admin.get(f"/tickets/{ids[0]}").json()["type"] == "Question"
    before = admin.get(f"/tickets/{ids[1]}").json()["created_at"]
    admin.post("/clock", json={"advance": 3600})
    newer = admin.post("/tickets", json={"count": 1}).json()["ids"][0]
    assert admin.get(f"/tickets/{newer}").json()["created_at"] > before
    assert admin.post("/reset").json() == {"tickets": 400}
    assert admin.get("/writes").json() == [] and ids[0] not in sim.truth()


def test_cli_rejects_bad_options_with_exit_code_2(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["simulator", "--data", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    plan = runner.invoke(app, ["simulator", "--plan", "platinum"])
    assert plan.exit_code == 2
    field = runner.invoke(
        app, ["simulator", "--required-field", "cf_colour", "--tickets", "10", "--open", "1"]
    )
    assert field.exit_code == 2 and "cf_colour" in field.output
    busy = runner.invoke(
        app, ["simulator", "--agent-edits-per-minute", "1e9", "--tickets", "10", "--open", "1"]
    )
    assert busy.exit_code == 2 and "agent_edits_per_minute" in busy.output
    preset = runner.invoke(app, ["simulator", "--open-preset-fraction", "2"])
    assert preset.exit_code == 2


def test_cli_serves_until_interrupted():
    command = [sys.executable, "-c", "from triage.cli import main; main()", "simulator", "--port", "0"]
    command += ["--tickets", "50", "--open", "5", "--api-key", "cli-key-123", "--plan", "pro"]
    command += ["--agent-edits-per-minute", "600", "--clock-offset", "-60"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    try:
        lines = []
        while not any(line.startswith("plan:") for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        base_url = next(line.split()[-1] for line in lines if line.startswith("base URL:"))
        assert any("cli-key-123" in line for line in lines)
        for _ in range(50):
            try:
                response = httpx.get(f"{base_url}/agents/me", auth=("cli-key-123", "X"))
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-total"] == "400"
        assert any(line.startswith("agents:    600 edits a minute") for line in lines)
        agents = httpx.get(base_url.removesuffix("/api/v2") + "/_simulator/agents", auth=("cli-key-123", "X"))
        assert agents.json()["running"] is True
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert process.returncode == 0
