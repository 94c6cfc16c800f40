"""The controller's own state store goes away (found by tests/faults/test_outage.py[postgres]).

Before: the pass raised out of ``load_status`` ("pass raised", a traceback), so the release never
showed Ready=False anywhere, ``pipectl_backend_up{backend="state"}`` stayed 1, /healthz said ok, and
every API request (/metrics included: the token is looked up in the store) answered 500 "internal
error" — Prometheus could not scrape, so PipectlStateStoreUnavailable could never fire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.exc import OperationalError

from controller.engine.reconciler import ERROR_RETRY
from controller.model.reasons import Reason
from controller.model.status import ReleaseStatus
from controller.obs import metrics
from controller.store.db import Store
from controller.store.tokens import RECENT_SECONDS, TokenStore
from tests.unit.engine.world import RELEASE, World, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")


def _raise(*_a: Any, **_k: Any) -> Any:
    raise OperationalError("SELECT status FROM releases", {}, ConnectionRefusedError("connection refused"))


def _state_up() -> float:
    return float(metrics.BACKEND_UP.labels(metrics.STATE_BACKEND)._value.get())


def test_store_down_at_the_start_of_a_pass_is_ready_false_backend_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    w.reconcile()  # a first pass writes a status
    seen: list[ReleaseStatus] = []
    w.reconciler.on_status = lambda name, st: seen.append(st)
    monkeypatch.setattr(w.store, "get_status", _raise)

    res = w.reconcile()  # no exception out of the pass

    assert res.requeue_after == ERROR_RETRY and len(res.errors) == 1
    assert res.errors[0].startswith("state store unavailable: OperationalError: ")
    ready = next(c for c in seen[-1].conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", Reason.BACKEND_UNAVAILABLE)
    assert ready.message == res.errors[0]
    assert seen[-1].stages  # the last status this process knew, not an empty one
    assert w.reconciler.store_error == res.errors[0]
    assert _state_up() == 0.0

    monkeypatch.undo()  # the store is back: the next pass records and clears the error
    w.reconcile()
    assert w.reconciler.store_error is None and _state_up() == 1.0


def test_store_down_when_the_pass_writes_its_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    seen: list[ReleaseStatus] = []
    w.reconciler.on_status = lambda name, st: seen.append(st)
    monkeypatch.setattr(w.store, "put_status", _raise)

    res = w.reconcile()

    assert res.errors and res.errors[-1].startswith("state store unavailable: ")
    ready = next(c for c in seen[-1].conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", Reason.BACKEND_UNAVAILABLE)
    assert _state_up() == 0.0


def test_a_corrupt_status_is_still_an_error_not_an_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    monkeypatch.setattr(w.store, "get_status", lambda name: {"phase": "NoSuchPhase"})
    with pytest.raises(ValueError, match="phase"):
        w.reconciler.reconcile(w.snap, RELEASE)  # type: ignore[arg-type]


def test_a_token_verified_a_moment_ago_still_works_while_the_store_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    tokens = TokenStore(Store(f"sqlite:///{tmp_path / 's.db'}"), clock=lambda: now[0])
    _, alice = tokens.create("alice")
    _, bob = tokens.create("bob")
    assert tokens.principal(alice) is not None  # verified while the store was up

    monkeypatch.setattr(tokens.store, "tx", _raise)
    who = tokens.principal(alice)
    assert who is not None and who.user == "alice"
    with pytest.raises(OperationalError):  # never verified by this process
        tokens.principal(bob)
    now[0] += RECENT_SECONDS + 1
    with pytest.raises(OperationalError):  # verified too long ago
        tokens.principal(alice)


def test_a_revoked_token_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenStore(Store(f"sqlite:///{tmp_path / 's.db'}"))
    tid, alice = tokens.create("alice")
    assert tokens.principal(alice) is not None
    tokens.revoke(tid)
    assert tokens.principal(alice) is None
    monkeypatch.setattr(tokens.store, "tx", _raise)
    with pytest.raises(OperationalError):
        tokens.principal(alice)


def test_the_api_answers_503_backend_unavailable_not_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from controller.api.server import create_app
    from tests.unit.api.apikit import World as ApiWorld
    from tests.unit.api.apikit import auth

    repo = tmp_path / "repo"
    for d in ("environments",):
        (repo / d).mkdir(parents=True)
    (repo / "environments" / "prod.yaml").write_text("kind: Environment\n")
    api = ApiWorld(repo, tmp_path)
    # as uvicorn serves it: the handler's answer, not the exception re-raised into the test
    api.client = TestClient(create_app(api.state), raise_server_exceptions=False)
    assert api.client.get("/metrics", headers=auth(api.alice)).status_code == 200
    monkeypatch.setattr(api.store, "get_status", _raise)
    r = api.client.get("/api/v1/releases/host-metrics", headers=auth(api.alice))
    assert r.status_code == 503, r.text
    assert r.json()["reason"] == "BackendUnavailable" and "state store unavailable" in r.json()["error"]
    assert r.headers["retry-after"] == "10"
    monkeypatch.setattr(api.tokens.store, "tx", _raise)  # and the tokens: alice was verified just now
    assert api.client.get("/metrics", headers=auth(api.alice)).status_code == 200
    r = api.client.get("/metrics", headers=auth(api.bob))  # bob was not
    assert r.status_code == 503 and r.json()["reason"] == "BackendUnavailable"


def test_healthz_is_not_ok_while_the_store_is_unavailable() -> None:
    from types import SimpleNamespace

    from controller.cli.run import _health

    elector = SimpleNamespace(is_leader=True)
    ctl = SimpleNamespace(last_error=None, last_commit="abc", reconciler=SimpleNamespace(store_error=None))
    health = _health(elector, ctl)
    assert health()["ok"] is True
    ctl.reconciler.store_error = "state store unavailable: OperationalError: connection refused"
    assert health() == {"ok": False, "leader": True, "commit": "abc", "error": ctl.reconciler.store_error}


def test_the_supervisor_pings_the_store_while_passes_are_held_up_elsewhere(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from controller.cli.run import _check_store

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    rt = SimpleNamespace(store=store, reconciler=SimpleNamespace(store_error=None))
    log = structlog.get_logger("test")
    _check_store(rt, log)  # type: ignore[arg-type]
    assert rt.reconciler.store_error is None and _state_up() == 1.0

    store.ping = _raise  # type: ignore[method-assign]
    _check_store(rt, log)  # type: ignore[arg-type]
    assert rt.reconciler.store_error.startswith("state store unavailable: OperationalError: ")
    assert _state_up() == 0.0

    del store.ping  # back
    _check_store(rt, log)  # type: ignore[arg-type]
    assert rt.reconciler.store_error is None and _state_up() == 1.0
