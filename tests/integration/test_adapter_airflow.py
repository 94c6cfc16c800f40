"""Airflow adapter against the real Airflow of the local stack (REST API + its DAG folder).

Each test deploys its own uniquely named DAGs (tiny BashOperator DAGs that follow the adapter's
convention: dag_id from the file name, tags from the ``.pipectl.json`` sidecar). Drift is made
with the plain apache-airflow-client or by writing the DAG folder directly; the plan comes from
the real diff rule. Every DAG is removed (files and record) at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_client.client.api.dag_api import DAGApi
from airflow_client.client.exceptions import NotFoundException
from airflow_client.client.model.dag import DAG

from controller.adapters.airflow import AirflowAdapter, LocalFolderDeployer, meta_file_name
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, Op, Reversibility
from controller.plan.desired import digest
from controller.plan.resources import DagResource, Owner, ResourceKind
from controller.plan.rules.airflow import diff_dag

pytestmark = pytest.mark.integration

KIND = ResourceKind.DAG
RELEASE = "it-airflow"
CHANGING = {"patch_dag", "delete_dag", "post_dag_run", "reparse_dag_file"}

SOURCE = '''"""pipectl integration-test DAG."""
from __future__ import annotations

import json
from pathlib import Path

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

_FILE = Path(__file__)
_META = _FILE.with_suffix(".pipectl.json")
PIPECTL = json.loads(_META.read_text()) if _META.exists() else {"tags": []}

with DAG(
    dag_id=_FILE.stem,
    tags=PIPECTL["tags"],
    schedule=PIPECTL.get("schedule"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    BashOperator(task_id="echo", bash_command="echo MESSAGE")
'''


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def folder(stack: dict[str, Any]) -> Path:
    return Path(stack["airflow_dags_folder"])


@pytest.fixture
def adapter(stack: dict[str, Any], folder: Path) -> AirflowAdapter:
    password = os.environ.get(stack.get("airflow_password_env", "PIPECTL_AIRFLOW_PASSWORD"), "admin")
    return AirflowAdapter(
        stack["airflow_url"], stack.get("airflow_user", "admin"), password, LocalFolderDeployer(folder),
        pickup_timeout=90.0,
    )


@pytest.fixture
def sdk(airflow_api: Any) -> DAGApi:
    return DAGApi(airflow_api)


@pytest.fixture
def new_dag(sdk: DAGApi, folder: Path, unique_name: str) -> Iterator[Callable[[], str]]:
    """Hands out fresh stage-scoped dag ids; removes their files and DAG records afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"pipectl_it_{unique_name}_{len(made)}__dev"
        made.append(name)
        return name

    yield make
    for name in made:
        for f in (f"{name}.py", meta_file_name(f"{name}.py")):
            (folder / f).unlink(missing_ok=True)
        try:
            sdk.delete_dag(name)
        except NotFoundException:
            pass


def desired(name: str, version: str = "1.0.0", message: str = "one", *, paused: bool = False,
            release: str = RELEASE, source: str | None = None) -> DagResource:
    src = source if source is not None else SOURCE.replace("MESSAGE", message)
    return DagResource(
        name=name, owner=Owner(release=release, version=version), file_name=f"{name}.py",
        source_digest=digest(src.encode()), version=version, paused=paused, source=src,
    )


def observe(adapter: AirflowAdapter, name: str) -> DagResource | None:
    live = adapter.observe(KIND, [name]).get(name)
    assert live is None or isinstance(live, DagResource)
    return live


def plan(adapter: AirflowAdapter, d: DagResource, ctx: DiffContext | None = None) -> list[Action]:
    return diff_dag(d, observe(adapter, d.name), ctx or DiffContext())


def deploy(adapter: AirflowAdapter, d: DagResource) -> None:
    actions = plan(adapter, d)
    assert [a.op for a in actions] == [Op.CREATE]
    assert adapter.apply(actions[0]).changed


def api_state(sdk: DAGApi, name: str) -> dict[str, Any]:
    dag = sdk.get_dag(name)
    return {"active": dag.is_active, "paused": dag.is_paused, "tags": sorted(t.name for t in dag.tags or [])}


def file_stamp(folder: Path, name: str) -> tuple[int, int]:
    return ((folder / f"{name}.py").stat().st_mtime_ns, (folder / meta_file_name(f"{name}.py")).stat().st_mtime_ns)


def tags(d: DagResource) -> list[str]:
    return sorted(["pipectl", f"release:{RELEASE}", f"version:{d.version}", f"source:{d.source_digest[7:19]}"])


# --- tests ----------------------------------------------------------------------------------------


def test_deploy_converges_and_reapply_is_noop(
    adapter: AirflowAdapter, sdk: DAGApi, folder: Path, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    d = desired(name)
    assert observe(adapter, name) is None
    actions = plan(adapter, d)
    assert [(a.op, a.name) for a in actions] == [(Op.CREATE, name)]

    result = adapter.apply(actions[0])
    assert result.changed, result
    assert api_state(sdk, name) == {"active": True, "paused": False, "tags": tags(d)}
    assert (folder / f"{name}.py").read_text() == d.source
    live = observe(adapter, name)
    assert live is not None and live.version == "1.0.0" and live.source_digest == d.source_digest
    assert live.owner == Owner(release=RELEASE, version="1.0.0")
    assert plan(adapter, d) == [], "converged after one apply"

    # A no-op pass: one batched read, nothing written, Airflow state the same.
    before_api, before_files = api_state(sdk, name), file_stamp(folder, name)
    adapter.stats.reset()
    assert plan(adapter, d) == []
    assert adapter.stats.calls == {"get_dags": 1}
    adapter.stats.reset()
    again = adapter.apply(actions[0])
    assert not again.changed, again
    assert not CHANGING & adapter.stats.calls.keys(), adapter.stats.calls
    assert adapter.stats.total == 1, "re-apply of a converged DAG is one read"
    assert file_stamp(folder, name) == before_files
    assert api_state(sdk, name) == before_api


def test_new_source_and_version_are_picked_up(
    adapter: AirflowAdapter, sdk: DAGApi, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    deploy(adapter, desired(name, "1.0.0", "one"))

    d2 = desired(name, "1.1.0", "two")
    actions = plan(adapter, d2)
    assert [a.op for a in actions] == [Op.UPDATE]
    assert [c.field for c in actions[0].changes] == ["source_digest", "version"]
    assert str(actions[0].changes[1]) == "version: 1.0.0 → 1.1.0"
    assert actions[0].reversibility is Reversibility.REVERSIBLE
    assert adapter.apply(actions[0]).changed
    dag = sdk.get_dag(name)
    assert sorted(t.name for t in dag.tags) == tags(d2)
    assert "echo two" in sdk.get_dag_source(dag.file_token).content
    assert plan(adapter, d2) == []

    # New code at the same version: the adapter waits for a parse after its write.
    d3 = desired(name, "1.1.0", "three")
    actions = plan(adapter, d3)
    assert [c.field for c in actions[0].changes] == ["source_digest"]
    assert adapter.apply(actions[0]).changed
    assert "echo three" in sdk.get_dag_source(sdk.get_dag(name).file_token).content
    assert plan(adapter, d3) == []

    # The manifest's dags[].schedule: through the sidecar, as Airflow's API reports it; then another.
    for schedule, old, description in (("*/30 * * * *", None, "Every 30 minutes"), ("@hourly", "*/30 * * * *", "")):
        d4 = d3.model_copy(update={"schedule_managed": True, "schedule": schedule})
        actions = plan(adapter, d4)
        assert [(c.field, c.old, c.new) for c in actions[0].changes] == [("schedule", old, schedule)]
        assert adapter.apply(actions[0]).changed
        dag = sdk.get_dag(name)
        assert (dag.schedule_interval["type"], dag.schedule_interval["value"]) == ("CronExpression", schedule)
        assert description in str(dag.timetable_description)
        assert plan(adapter, d4) == []


def test_drift_outside_pipectl_is_detected_and_repaired(
    adapter: AirflowAdapter, sdk: DAGApi, folder: Path, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    d = desired(name)
    deploy(adapter, d)

    # Someone pauses the DAG through the API.
    sdk.patch_dag(name, DAG(is_paused=True), update_mask=["is_paused"])
    actions = plan(adapter, d)
    assert [(a.op, [str(c) for c in a.changes]) for a in actions] == [(Op.UPDATE, ["paused: True → False"])]
    stamp = file_stamp(folder, name)
    assert adapter.apply(actions[0]).changed
    assert api_state(sdk, name)["paused"] is False
    assert file_stamp(folder, name) == stamp, "unpausing does not redeploy"
    assert plan(adapter, d) == []

    # Someone edits the deployed file in place.
    (folder / f"{name}.py").write_text(SOURCE.replace("MESSAGE", "hand edit"))
    actions = plan(adapter, d)
    assert [(a.op, [c.field for c in a.changes]) for a in actions] == [(Op.UPDATE, ["source_digest"])]
    assert adapter.apply(actions[0]).changed
    assert (folder / f"{name}.py").read_text() == d.source
    assert plan(adapter, d) == []


def test_desired_paused_state_is_applied(adapter: AirflowAdapter, sdk: DAGApi, new_dag: Callable[[], str]) -> None:
    name = new_dag()
    d = desired(name, paused=True)
    deploy(adapter, d)
    assert api_state(sdk, name)["paused"] is True
    assert plan(adapter, d) == []


def test_refusals_leave_airflow_untouched_and_approved_delete_removes(
    adapter: AirflowAdapter, sdk: DAGApi, folder: Path, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    deploy(adapter, desired(name))
    before_api, before_files = api_state(sdk, name), file_stamp(folder, name)

    # Another release declaring the same dag_id.
    foreign = plan(adapter, desired(name, release="someone-else"))
    assert [(a.op, a.reason_code) for a in foreign] == [(Op.REFUSE, Reason.NOT_OWNED)]
    # Pruning without approval.
    live = observe(adapter, name)
    pruned = diff_dag(None, live, DiffContext(prune=True))
    assert [(a.op, a.reason_code) for a in pruned] == [(Op.REFUSE, Reason.DELETE_NOT_APPROVED)]
    for refusal in foreign + pruned:
        adapter.stats.reset()
        with pytest.raises(PermanentBackendError, match="refused"):
            adapter.apply(refusal)
        assert adapter.stats.total == 0
    assert api_state(sdk, name) == before_api
    assert file_stamp(folder, name) == before_files

    # With approval: paused, files removed, record deleted; then nothing left to do.
    approved = diff_dag(None, live, DiffContext(prune=True, allow_delete=frozenset({name})))
    assert [(a.op, a.reversibility) for a in approved] == [(Op.DELETE, Reversibility.DESTRUCTIVE)]
    assert adapter.apply(approved[0]).changed
    assert not (folder / f"{name}.py").exists() and not (folder / meta_file_name(f"{name}.py")).exists()
    with pytest.raises(NotFoundException):
        sdk.get_dag(name)
    assert observe(adapter, name) is None
    adapter.stats.reset()
    assert not adapter.apply(approved[0]).changed
    assert not CHANGING & adapter.stats.calls.keys()


def test_dag_that_fails_to_import_is_a_clear_permanent_error(
    adapter: AirflowAdapter, sdk: DAGApi, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    broken = SOURCE.replace("MESSAGE", "x") + '\nraise ValueError("pipectl-it deliberately broken")\n'
    d = desired(name, source=broken)
    started = time.monotonic()
    with pytest.raises(PermanentBackendError, match=r"fails to import.*ValueError: pipectl-it deliberately broken"):
        adapter.apply(plan(adapter, d)[0])
    assert time.monotonic() - started < 60, "reported from ImportErrorApi, not by timing out"
    with pytest.raises(NotFoundException):
        sdk.get_dag(name)

    # Airflow does not report it, but its file holds the dag_id: another release is refused
    # instead of overwriting it; its own release deploys again (and waits for Airflow)
    live = observe(adapter, name)
    assert live is not None and not live.reported and live.owner == d.owner
    assert adapter.observe_scope("dags")[(KIND, name)] == live
    foreign = plan(adapter, desired(name, release="someone-else"))
    assert [(a.op, a.reason_code) for a in foreign] == [(Op.REFUSE, Reason.NOT_OWNED)]
    assert foreign[0].reason.endswith(f"belongs to release {RELEASE}, not someone-else"
                                      " (its file is deployed; Airflow has not parsed it yet)")
    assert [a.op for a in plan(adapter, d)] == [Op.CREATE]


def test_trigger_run_with_deterministic_id_runs_once(
    adapter: AirflowAdapter, sdk: DAGApi, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    deploy(adapter, desired(name, message="run"))
    run_id = f"pipectl__{name}__1.0.0"
    assert adapter.run_state(name, run_id) is None

    first = adapter.trigger_run(name, run_id, {"n": 1, "stage": "dev"})
    adapter.stats.reset()
    second = adapter.trigger_run(name, run_id, {"n": 1, "stage": "dev"})  # 409: already exists
    assert adapter.stats.calls == {"post_dag_run": 1, "get_dag_run": 1}
    assert first in {"queued", "running"} and second in {"queued", "running", "success"}

    deadline = time.monotonic() + 240
    state = adapter.run_state(name, run_id)
    while state not in {"success", "failed"} and time.monotonic() < deadline:
        time.sleep(2)
        state = adapter.run_state(name, run_id)
    assert state == "success"
    runs = adapter.list_runs(name)
    assert [(r["run_id"], r["state"], r["conf"]) for r in runs] == [(run_id, "success", {"n": 1, "stage": "dev"})]
    assert adapter.list_runs(name, states=["failed"]) == []
    assert runs[0]["end_date"] is not None and runs[0]["end_date"].tzinfo is not None


def test_new_version_waits_for_in_flight_runs_to_drain(
    stack: dict[str, Any], folder: Path, adapter: AirflowAdapter, new_dag: Callable[[], str]
) -> None:
    name = new_dag()
    slow = desired(name, "1.0.0", message="old; sleep 20")
    deploy(adapter, slow)
    run_id = f"pipectl__{name}__drain"
    adapter.trigger_run(name, run_id, {})
    v2 = desired(name, "1.1.0", message="new")
    impatient = AirflowAdapter(
        adapter.url, stack.get("airflow_user", "admin"),
        os.environ.get(stack.get("airflow_password_env", "PIPECTL_AIRFLOW_PASSWORD"), "admin"),
        LocalFolderDeployer(folder), pickup_timeout=90.0, drain_timeout=1.0,
    )
    [update] = plan(impatient, v2)
    assert update.op is Op.UPDATE
    with pytest.raises(TransientBackendError) as err:
        impatient.apply(update)
    assert err.value.reason == Reason.RUNS_IN_FLIGHT
    assert f"waiting for 1 in-flight run(s) of version 1.0.0 to drain before deploying 1.1.0 ({run_id})" in str(
        err.value
    )
    # the old code is untouched, the old version keeps running (not paused) and finishes
    assert "sleep 20" in (folder / f"{name}.py").read_text()
    assert observe(adapter, name) is not None and not observe(adapter, name).paused  # type: ignore[union-attr]

    deadline = time.monotonic() + 240
    while adapter.run_state(name, run_id) not in {"success", "failed"} and time.monotonic() < deadline:
        time.sleep(2)
    assert adapter.run_state(name, run_id) == "success"
    assert impatient.apply(update).changed
    live = observe(adapter, name)
    assert live is not None and live.version == "1.1.0"
    assert "echo new" in (folder / f"{name}.py").read_text()
