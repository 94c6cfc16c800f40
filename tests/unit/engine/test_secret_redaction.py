"""A secret in an exception or gate message never reaches the release's status, the events (the
state store's and the event stream), the audit ledger or the logs: the real ``Reconciler`` over the
in-memory world (``world.py``), a backend failing with the password in its message.

Redaction points: ``controller.engine.passes.StatusWriter.set``, ``Reconciler._ready``,
``controller.audit.records.build_record``, ``controller.obs.events.make_event``, the log processor;
secrets resolved from references are registered (``controller.obs.logging.register_secret``)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from world import World, repo_files

from controller.model.errors import PermanentBackendError
from controller.model.reasons import Verdict
from controller.obs.logging import configure_logging
from controller.source.secrets_policy import resolve_secret

ENV_SECRET = "env-pw-Zq81x"  # a PIPECTL_SECRET_* variable's value
FILE_SECRET = "file-pw-Kd27v"  # a secret file's content, known only once resolved


class Events:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.lines.append(json.dumps(event))


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    saved = structlog.get_config()
    buf = io.StringIO()
    configure_logging(json=True, level="debug", stream=buf)
    yield buf
    structlog.configure(**saved)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO) -> World:
    """A world whose secrets are known to pipectl: a PIPECTL_SECRET_* variable and a resolved file."""
    monkeypatch.setenv("PIPECTL_SECRET_KAFKA_PASSWORD", ENV_SECRET)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hive").write_text(FILE_SECRET + "\n")
    monkeypatch.setenv("PIPECTL_SECRETS_DIR", str(secrets))
    assert resolve_secret("file:hive").reveal() == FILE_SECRET  # as wiring does for an adapter
    w = World(tmp_path / "world")
    w.reconciler.ops.events = Events()
    w.commit(repo_files())
    return w


LEAK = f"SASL authentication failed (password {ENV_SECRET!r}, ldap bind {FILE_SECRET})"


def _everywhere(w: World, logs: io.StringIO) -> dict[str, str]:
    events = w.reconciler.ops.events
    assert isinstance(events, Events)
    places = {
        "status": json.dumps(w.store.get_status("metrics")),
        "events": json.dumps(w.store.recent_events("metrics", limit=500), default=str),
        "stream": "\n".join(events.lines),
        "audit": json.dumps(w.ledger.records("metrics"), default=str),
        "logs": logs.getvalue(),
    }
    for where, text in places.items():
        assert ENV_SECRET not in text, (where, text[max(0, text.find(ENV_SECRET) - 300) :][:400])
        assert FILE_SECRET not in text, (where, text[max(0, text.find(FILE_SECRET) - 300) :][:400])
    return places


def test_a_backend_error_with_a_password_is_redacted(world: World, logs: io.StringIO) -> None:
    world.at("dev").kafka.observe_error = PermanentBackendError("kafka", LEAK)
    res = world.reconcile()
    assert res.errors and ENV_SECRET in res.errors[0]  # the pass's own result (not persisted)
    places = _everywhere(world, logs)
    ready = world.ready()
    assert ready.message.startswith("stage dev: kafka: SASL authentication failed (password '[REDACTED]'")
    assert "[REDACTED]" in places["logs"] and "SASL authentication failed" in places["logs"]


def test_a_gate_message_with_a_password_is_redacted(world: World, logs: io.StringIO) -> None:
    world.gates.set("dev", "keeps-up", Verdict.FAIL, f"query failed: {LEAK}")
    world.reconcile()  # dev deploys; its gate fails: rollback, audit record, events
    world.clock.advance(30)
    world.reconcile()
    places = _everywhere(world, logs)
    assert "query failed: SASL authentication failed (password '[REDACTED]'" in places["status"]
    assert "[REDACTED]" in places["audit"] and "[REDACTED]" in places["stream"]
    assert "[REDACTED]" in places["events"]
