"""The DAG diff rule's schedule comparison: only a schedule the manifest sets is compared."""

from __future__ import annotations

from controller.plan.actions import DiffContext, Op
from controller.plan.resources import DagResource, Owner
from controller.plan.rules.airflow import diff_dag

OWNER = Owner(release="host-metrics", version="1.0.0")


def dag(**kw: object) -> DagResource:
    base: dict[str, object] = {
        "name": "daily__dev", "owner": OWNER, "file_name": "daily__dev.py", "source_digest": "sha256:ab",
        "version": "1.0.0",
    }
    base.update(kw)
    return DagResource.model_validate(base)


def test_a_schedule_the_manifest_sets_is_compared_with_airflows() -> None:
    desired = dag(schedule_managed=True, schedule="0 6 * * *")
    [action] = diff_dag(desired, dag(schedule="@daily"), DiffContext())
    assert action.op is Op.UPDATE and action.reason == "redeploy DAG file"
    assert [str(c) for c in action.changes] == ["schedule: @daily → 0 6 * * *"]
    assert diff_dag(desired, dag(schedule="0 6 * * *"), DiffContext()) == []


def test_manual_runs_only_is_a_schedule_too() -> None:
    [action] = diff_dag(dag(schedule_managed=True, schedule=None), dag(schedule="@daily"), DiffContext())
    assert [(c.field, c.old, c.new) for c in action.changes] == [("schedule", "@daily", None)]


def test_an_unset_schedule_leaves_the_dag_files_own() -> None:
    assert diff_dag(dag(), dag(schedule="@hourly"), DiffContext()) == []
