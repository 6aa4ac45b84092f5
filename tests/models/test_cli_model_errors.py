"""A damaged or unsafe model store: the model commands fail with one line naming the file (exit 1),
never a traceback, and never show the API key."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from triage.cli import app

KEY = "sk-STORE-5e1d0c9b8a7f"


def _replace(path: Path, content: bytes) -> None:
    path.unlink()  # the copy shares inodes with the session's store: never write through them
    path.write_bytes(content)


def _link_outside(folder: Path) -> None:
    outside = folder.parents[3] / "elsewhere"
    (folder / "encoder").rename(outside)
    (folder / "encoder").symlink_to(outside)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbled pointer": (lambda v: _replace(v.parents[1] / "current.json", b"not json"), "current.json"),
    "truncated heads": (lambda v: _replace(v / "heads.safetensors", b"\x40\x00\x00"), "heads.safetensors"),
    "truncated encoder": (lambda v: _replace(v / "encoder" / "model.safetensors", b"\x10\x00"), "encoder"),
    "garbled manifest": (lambda v: _replace(v / "model.json", b'{"format": 1'), "model.json"),
    "pickle in the encoder": (
        lambda v: (v / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01."),
        "pytorch_model.bin",
    ),
    "encoder linked outside": (_link_outside, "outside the model folder"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_store_fails_each_model_command_cleanly(stored, tmp_path, monkeypatch, name):
    monkeypatch.setenv("FRESHDESK_API_KEY", KEY)
    source_root, version = stored
    root = tmp_path / "work" / "store"
    shutil.copytree(source_root, root, copy_function=os.link)
    damage, named = DAMAGE[name]
    damage(root / "versions" / version.version)
    tickets = tmp_path / "open.parquet"
    pd.DataFrame({"ticket_id": [1], "subject": ["Printer"], "description": ["It jams"]}).to_parquet(tickets)
    runner = CliRunner()
    for command in (
        ["predict", str(tickets), str(tmp_path / "out.parquet")],
        ["evaluate", str(tmp_path / "labelled.csv")],
        ["models", "list"],
        ["models", "rollback"],
        ["models", "promote", version.version],
    ):
        result = runner.invoke(app, [*command, "--store", str(root)])
        where = f"{name}: triage {' '.join(command)}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (where, result.exception)
        assert KEY not in result.output, where
        if command[0] in ("predict", "evaluate"):
            assert result.exit_code == 1 and named in result.stderr, (where, result.output)
            assert len(result.stderr.strip().splitlines()) == 1, (where, result.stderr)
