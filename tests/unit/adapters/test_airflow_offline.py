"""Airflow adapter pieces that need no server: the folder deployer, the sidecar convention, error mapping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from airflow_client.client.exceptions import ApiException

from controller.adapters.airflow import (
    AirflowAdapter,
    LocalFolderDeployer,
    _wrap,
    id_pattern,
    meta_file_name,
    render_meta,
    tag_value,
    unparsed_dags,
)
from controller.model.errors import ConflictError, PermanentBackendError, TransientBackendError
from controller.plan.actions import Action, Op
from controller.plan.desired import digest
from controller.plan.resources import DagResource, Owner, ResourceKind


def _dag(version: str = "1.0.0") -> DagResource:
    src = "print('dag')\n"
    return DagResource(
        name="daily__dev", owner=Owner(release="host-metrics", version=version), file_name="daily__dev.py",
        source_digest=digest(src.encode()), version=version, source=src,
    )


def test_deployer_writes_atomically_and_reports_digest(tmp_path: Path) -> None:
    dep = LocalFolderDeployer(tmp_path / "dags")
    assert dep.read_digest("a.py") is None
    dep.deploy("a.py", "x = 1\n")
    assert (tmp_path / "dags" / "a.py").read_text() == "x = 1\n"
    assert dep.read_digest("a.py") == digest(b"x = 1\n")
    dep.deploy("a.py", "x = 2\n")
    assert dep.read_digest("a.py") == digest(b"x = 2\n")
    assert sorted(os.listdir(tmp_path / "dags")) == ["a.py"], "no temp files left behind"
    assert (tmp_path / "dags" / "a.py").stat().st_mode & 0o777 == 0o644
    dep.remove("a.py")
    dep.remove("a.py")
    assert dep.read_digest("a.py") is None


@pytest.mark.parametrize("bad", ["../evil.py", "sub/a.py", "/abs.py", "", ".hidden.py"])
def test_deployer_rejects_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PermanentBackendError):
        LocalFolderDeployer(tmp_path).deploy(bad, "x")


def test_sidecar_matches_what_the_dag_file_reads() -> None:
    assert meta_file_name("daily__dev.py") == Path("/dags/daily__dev.py").with_suffix(".pipectl.json").name
    meta = json.loads(render_meta(_dag()))
    assert meta == {
        "dag_id": "daily__dev", "release": "host-metrics", "version": "1.0.0",
        "tags": ["pipectl", "release:host-metrics", "version:1.0.0", f"source:{_dag().source_digest[7:19]}"],
    }
    assert _dag().source_digest.startswith("sha256:")
    assert render_meta(_dag()) == render_meta(_dag()), "deterministic"
    assert tag_value(meta["tags"], "version") == "1.0.0"
    assert tag_value(meta["tags"], "release") == "host-metrics"
    assert tag_value(["pipectl"], "version") is None


def test_id_pattern() -> None:
    assert id_pattern(["a__dev"]) == "a__dev"
    assert id_pattern(["a__dev", "bb__dev"]) == "__dev"
    assert id_pattern(["metrics_a__dev", "metrics_b__prod"]) == "metrics_"
    assert id_pattern(["a", "b"]) is None
    assert id_pattern([]) is None


@pytest.mark.parametrize(
    ("status", "err"),
    [(409, ConflictError), (503, TransientBackendError), (429, TransientBackendError),
     (403, PermanentBackendError), (400, PermanentBackendError)],
)
def test_error_mapping(status: int, err: type[Exception]) -> None:
    assert isinstance(_wrap("get_dag", ApiException(status=status, reason="x")), err)


def test_refused_action_is_not_applied(tmp_path: Path) -> None:
    adapter = AirflowAdapter("http://127.0.0.1:1", "u", "p", LocalFolderDeployer(tmp_path))
    refuse = Action(op=Op.REFUSE, kind=ResourceKind.DAG, name="daily__dev", reason="no", desired=_dag())
    with pytest.raises(PermanentBackendError, match="refused"):
        adapter.apply(refuse)
    assert adapter.stats.total == 0
    assert list(tmp_path.iterdir()) == []


def test_a_version_deployed_again_waits_afresh_for_its_pickup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.0.0 deployed with requeued waits, seen in place by a later pass (no more applies), 2.0.0
    deployed, then 1.0.0 again minutes later (a rollback): its pickup wait starts now; the first
    wait's expired deadline used to fail it at once ("not picked up within 60s")."""
    from types import SimpleNamespace

    from controller.adapters import airflow as mod
    from controller.model.errors import NotReadyYet

    clock = [1000.0]
    monkeypatch.setattr(mod.time, "monotonic", lambda: clock[0])
    adapter = AirflowAdapter("http://127.0.0.1:1", "u", "p", LocalFolderDeployer(tmp_path), pickup_timeout=60)
    adapter.requeue_waits = True
    live: list[object] = [None]
    monkeypatch.setattr(adapter, "_get_dag", lambda dag_id, only_active=True: live[0])
    monkeypatch.setattr(adapter, "_import_error", lambda file_name: None)
    monkeypatch.setattr(adapter, "list_runs", lambda dag_id, states=None: [])
    monkeypatch.setattr(adapter, "_request_reparse", lambda token: None)

    def parsed(d: DagResource) -> object:
        tags = [SimpleNamespace(name=t) for t in json.loads(render_meta(d))["tags"]]
        return SimpleNamespace(is_active=True, tags=tags, last_parsed_time=None, file_token=None, is_paused=False)

    def deploy(d: DagResource) -> str:
        action = Action(op=Op.UPDATE, kind=ResourceKind.DAG, name=d.name, reason="r", desired=d)
        return adapter.apply(action).message

    v1 = _dag("1.0.0")
    src2 = "print('dag v2')\n"
    v2 = v1.model_copy(update={"version": "2.0.0", "source": src2, "source_digest": digest(src2.encode())})
    with pytest.raises(NotReadyYet):
        deploy(v1)  # written; Airflow has not parsed it yet: the pass requeues
    live[0] = parsed(v1)  # parsed: the next pass sees it in place and plans nothing for it
    clock[0] += 300
    live[0] = None
    with pytest.raises(NotReadyYet):
        deploy(v2)
    live[0] = parsed(v2)
    assert deploy(v2) == "converged"
    clock[0] += 300
    with pytest.raises(NotReadyYet):  # 1.0.0 again: a fresh 60 s wait, not the expired one
        deploy(v1)
    clock[0] += 30
    live[0] = parsed(v1)
    assert deploy(v1) == "converged"


def test_the_manifest_schedule_goes_into_the_sidecar_only_when_set() -> None:
    assert "schedule" not in json.loads(render_meta(_dag()))
    managed = _dag().model_copy(update={"schedule_managed": True, "schedule": "*/15 * * * *"})
    assert json.loads(render_meta(managed))["schedule"] == "*/15 * * * *"
    manual = _dag().model_copy(update={"schedule_managed": True, "schedule": None})
    assert json.loads(render_meta(manual))["schedule"] is None


def test_a_dag_file_that_ignores_the_manifest_schedule_fails_at_the_pickup_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow reports the new version but the file's own schedule: not picked up (requeue) until the
    deadline, then a permanent error naming both schedules and the fix; once Airflow reports the
    manifest's schedule the deploy converges and observe returns it (what the diff compares)."""
    from types import SimpleNamespace

    from controller.adapters import airflow as mod
    from controller.model.errors import NotReadyYet

    clock = [1000.0]
    monkeypatch.setattr(mod.time, "monotonic", lambda: clock[0])
    adapter = AirflowAdapter("http://127.0.0.1:1", "u", "p", LocalFolderDeployer(tmp_path), pickup_timeout=60)
    adapter.requeue_waits = True
    live: list[object] = [None]
    monkeypatch.setattr(adapter, "_get_dag", lambda dag_id, only_active=True: live[0])
    monkeypatch.setattr(adapter, "_import_error", lambda file_name: None)
    monkeypatch.setattr(adapter, "list_runs", lambda dag_id, states=None: [])

    d = _dag().model_copy(update={"schedule_managed": True, "schedule": "0 6 * * *"})

    def parsed(schedule: str | None) -> object:
        tags = [SimpleNamespace(name=t) for t in json.loads(render_meta(d))["tags"]]
        interval = None if schedule is None else SimpleNamespace(type="CronExpression", value=schedule)
        return SimpleNamespace(
            is_active=True, tags=tags, last_parsed_time=None, file_token=None, is_paused=False,
            schedule_interval=interval, dag_id=d.name, fileloc=f"/dags/{d.file_name}",
        )

    action = Action(op=Op.CREATE, kind=ResourceKind.DAG, name=d.name, reason="r", desired=d)
    with pytest.raises(NotReadyYet):
        adapter.apply(action)
    assert json.loads((tmp_path / meta_file_name(d.file_name)).read_text())["schedule"] == "0 6 * * *"
    live[0] = parsed("@daily")  # the file kept its own schedule
    with pytest.raises(NotReadyYet):
        adapter.apply(action)
    clock[0] += 61
    with pytest.raises(PermanentBackendError) as err:
        adapter.apply(action)
    assert str(err.value).endswith(
        "DAG daily__dev: Airflow reports schedule '@daily', the manifest says '0 6 * * *'; daily__dev.py "
        "must pass PIPECTL.get('schedule') (from its .pipectl.json sidecar) to DAG(schedule=...), or the "
        "manifest must leave dags[].schedule unset"
    )
    live[0] = parsed("0 6 * * *")
    assert adapter.apply(action).message == "converged"
    assert adapter._live(live[0]).schedule == "0 6 * * *"
    assert adapter._live(parsed(None)).schedule is None


def test_unparsed_dags_are_read_from_their_sidecars(tmp_path: Path) -> None:
    """What Airflow does not report yet, the folder still holds: each file with its sidecar's owner."""
    dep = LocalFolderDeployer(tmp_path)
    theirs = _dag().model_copy(update={"owner": Owner(release="other", version="2.0.0"), "version": "2.0.0"})
    dep.deploy("daily__dev.py", "print('dag')\n")
    dep.deploy(meta_file_name("daily__dev.py"), render_meta(theirs))
    dep.deploy("reported__dev.py", "x = 1\n")
    dep.deploy(meta_file_name("reported__dev.py"), render_meta(theirs))
    dep.deploy(meta_file_name("nofile__dev.py"), render_meta(theirs))  # sidecar without its .py
    dep.deploy("broken__dev.py", "x = 1\n")
    dep.deploy(meta_file_name("broken__dev.py"), "{not json")
    dep.deploy("anon__dev.py", "x = 1\n")
    dep.deploy(meta_file_name("anon__dev.py"), json.dumps({"dag_id": "anon__dev", "release": None}))

    found = unparsed_dags(dep, {"reported__dev"})
    assert list(found) == ["daily__dev"]
    d = found["daily__dev"]
    assert (d.reported, d.owner, d.version, d.file_name) == (
        False, Owner(release="other", version="2.0.0"), "2.0.0", "daily__dev.py",
    )
    assert d.source_digest == digest(b"print('dag')\n")
    assert list(unparsed_dags(dep, set(), ["daily__dev", "absent__dev"])) == ["daily__dev"]
    assert unparsed_dags(LocalFolderDeployer(tmp_path / "missing"), set()) == {}
