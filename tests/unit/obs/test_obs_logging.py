"""Structured logging: JSON lines with bound context, stdlib records included, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog
from structlog.testing import capture_logs

from controller.obs.logging import (
    REDACTED,
    bind_run,
    configure_logging,
    get_logger,
    propagate_context,
    redact,
    redact_secrets,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging(json=True, level="info", stream=buf)
    yield buf


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_timestamp_level_logger(out: io.StringIO) -> None:
    log = get_logger("controller.engine.reconciler")
    log.info("pass_started", actions=3)
    log.warning("multi\nline message")

    first, second = lines(out)
    assert first["event"] == "pass_started" and first["actions"] == 3
    assert first["level"] == "info"
    assert first["logger"] == "controller.engine.reconciler"
    assert str(first["timestamp"]).endswith("Z")
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert second["event"] == "multi\nline message"
    assert len(out.getvalue().splitlines()) == 2


def test_bound_context_appears_on_every_record(out: io.StringIO) -> None:
    log = get_logger("t")
    with bind_run("run-42", release="host-metrics", stage="canary"):
        log.info("inside")
        logging.getLogger("kafka.admin").warning("from a library")
    log.info("outside")

    inside, library, outside = lines(out)
    for rec in (inside, library):
        assert (rec["run_id"], rec["release"], rec["stage"]) == ("run-42", "host-metrics", "canary")
    assert library["logger"] == "kafka.admin" and library["event"] == "from a library"
    assert "run_id" not in outside


def test_bound_context_with_capture_logs() -> None:
    configure_logging(stream=io.StringIO())
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        bind_run("run-7", release="r", stage="dev"),
    ):
        get_logger("t").info("applied", action="create topic")
    assert logs == [
        {
            "run_id": "run-7",
            "release": "r",
            "stage": "dev",
            "action": "create topic",
            "event": "applied",
            "log_level": "info",
        }
    ]


def test_context_follows_work_into_a_thread_pool(out: io.StringIO) -> None:
    log = get_logger("t")

    def work() -> None:
        log.info("in_worker")

    with bind_run("run-9", release="r"), ThreadPoolExecutor(1) as pool:
        pool.submit(propagate_context(work)).result()
        pool.submit(work).result()

    propagated, bare = lines(out)
    assert propagated["run_id"] == "run-9"
    assert "run_id" not in bare


def test_level_filters(out: io.StringIO) -> None:
    configure_logging(level="warning", stream=out)
    log = get_logger("t")
    log.info("dropped")
    log.error("kept")
    assert [r["event"] for r in lines(out)] == ["kept"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="chatty")


def test_secret_keys_are_redacted_at_any_depth(out: io.StringIO) -> None:
    get_logger("t").info(
        "connecting",
        password="hunter22",
        headers={"Authorization": "Bearer abc.def", "Accept": "json"},
        backends=[{"name": "airflow", "api_token": "t0k"}],
        client_secret="s",
        passed_gates=2,
    )
    rec = lines(out)[0]
    assert rec["password"] == REDACTED
    assert rec["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert rec["backends"] == [{"name": "airflow", "api_token": REDACTED}]
    assert rec["client_secret"] == REDACTED
    assert rec["passed_gates"] == 2


def test_values_of_pipectl_secret_env_vars_are_redacted_in_strings(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", "airflow-pw-123")
    monkeypatch.setenv("PIPECTL_API_TOKEN", "tok-abcdef")
    monkeypatch.setenv("PIPECTL_REPO", "https://git.example/repo")
    monkeypatch.setenv("PIPECTL_SECRETS_DIR", "/etc/pipectl/secrets")  # where secrets are: not one
    log = get_logger("t")
    log.info(
        "login failed for admin:airflow-pw-123",
        detail="token tok-abcdef rejected",
        repo="https://git.example/repo",
        missing="/etc/pipectl/secrets/airflow-password",
    )
    logging.getLogger("airflow_client").error("401 with %s", "tok-abcdef")
    try:
        raise RuntimeError("auth airflow-pw-123")
    except RuntimeError:
        log.exception("apply_failed")

    text = out.getvalue()
    assert "airflow-pw-123" not in text and "tok-abcdef" not in text
    first, second, third = lines(out)
    assert first["event"] == f"login failed for admin:{REDACTED}"
    assert first["repo"] == "https://git.example/repo"  # not a secret variable
    assert first["missing"] == "/etc/pipectl/secrets/airflow-password"
    assert second["event"] == f"401 with {REDACTED}"
    assert REDACTED in str(third["exception"])


def test_inline_credentials_are_redacted(out: io.StringIO) -> None:
    get_logger("t").info(
        "state", url="postgresql://pipectl:pg-pass@db:5432/pipectl", header="Bearer eyJhbGci.x.y"
    )
    rec = lines(out)[0]
    assert rec["url"] == f"postgresql://pipectl:{REDACTED}@db:5432/pipectl"
    assert rec["header"] == f"Bearer {REDACTED}"


def test_short_env_values_are_not_treated_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_X_TOKEN", "1")
    assert redact_secrets(None, "info", {"event": "applied 1 action"}) == {"event": "applied 1 action"}


def test_redact_is_usable_on_plain_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_STATE_PASSWORD", "pg-secret")
    assert redact({"url": "x pg-secret", "token": 1, "n": (1, 2)}) == {
        "url": f"x {REDACTED}",
        "token": REDACTED,
        "n": [1, 2],
    }


def test_console_renderer_for_people() -> None:
    buf = io.StringIO()
    configure_logging(json=False, stream=buf)
    get_logger("t").info("hello", password="x")
    text = buf.getvalue()
    assert "hello" in text and REDACTED in text and not text.lstrip().startswith("{")


def test_a_secret_env_value_set_or_changed_later_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    # the secret values are remembered between calls; a changed environment is seen at once
    monkeypatch.setenv("PIPECTL_DB_PASSWORD", "first-long-secret")
    assert redact("x first-long-secret y") == f"x {REDACTED} y"
    monkeypatch.setenv("PIPECTL_DB_PASSWORD", "second-long-secret")
    assert redact("first-long-secret second-long-secret") == f"first-long-secret {REDACTED}"
    monkeypatch.delenv("PIPECTL_DB_PASSWORD")
    assert redact("second-long-secret") == "second-long-secret"


def test_registered_secrets_replaced_by_others_are_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.obs import logging as obs_logging

    monkeypatch.setattr(obs_logging, "_REGISTERED", {"registered-secret-one"})
    assert redact("registered-secret-one") == REDACTED
    monkeypatch.setattr(obs_logging, "_REGISTERED", {"registered-secret-two"})  # as many, other values
    assert redact("registered-secret-one registered-secret-two") == f"registered-secret-one {REDACTED}"
