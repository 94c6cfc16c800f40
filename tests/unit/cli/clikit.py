"""Running ``pipectl`` in-process for the CLI tests (typer's CliRunner), with its own config file,
and a state store with releases in it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from controller.cli import client, config
from controller.cli.main import app
from controller.store.db import Store


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Any:
    """``pipectl ARGS`` in this process; stdout and stderr apart (``.stdout``, ``.stderr``)."""
    config.select(None)
    client._decided.clear()
    return CliRunner().invoke(app, list(args), env=dict(env or {}), prog_name="pipectl")


def status(version: str, stages: Mapping[str, tuple[str, str]], ready: str = "True") -> dict[str, Any]:
    """A release status: ``stages`` = stage → (version, phase)."""
    return {
        "version": version,
        "phase": "Succeeded" if ready == "True" else "Progressing",
        "currentStage": list(stages)[-1] if stages else None,
        "stages": {s: {"version": v, "phase": p} for s, (v, p) in stages.items()},
        "conditions": [
            {"type": "Ready", "status": ready, "reason": "ReconciliationSucceeded", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
    }


def store_with(path: Path, releases: Mapping[str, dict[str, Any]]) -> str:
    """A SQLite state store at ``path`` holding ``releases``; returns its URL."""
    url = f"sqlite:///{path}"
    store = Store(url)
    for name, st in releases.items():
        store.put_status(name, st)
    store.close()
    return url
