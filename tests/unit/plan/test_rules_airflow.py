"""The DAG diff rule: only a schedule the manifest sets is compared; a deployed file Airflow has not
parsed yet still holds its dag_id for the release its sidecar names."""

from __future__ import annotations

from controller.model.reasons import Reason
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


def test_a_file_another_release_deployed_is_refused_before_airflow_parses_it() -> None:
    theirs = dag(owner=Owner(release="other", version="2.0.0"), version="2.0.0", reported=False)
    [action] = diff_dag(dag(), theirs, DiffContext())
    assert (action.op, action.reason_code) == (Op.REFUSE, Reason.NOT_OWNED)
    assert action.reason == (
        "DAG daily__dev belongs to release other, not host-metrics"
        " (its file is deployed; Airflow has not parsed it yet)"
    )


def test_our_own_file_not_parsed_yet_is_created_again() -> None:
    """Nothing to compare until Airflow reports it: the CREATE writes nothing new and waits."""
    [action] = diff_dag(dag(), dag(reported=False), DiffContext())
    assert action.op is Op.CREATE


def test_a_file_no_longer_declared_needs_approval_parsed_or_not() -> None:
    [refused] = diff_dag(None, dag(reported=False), DiffContext())
    assert (refused.op, refused.reason_code) == (Op.REFUSE, Reason.DELETE_NOT_APPROVED)
    [delete] = diff_dag(None, dag(reported=False), DiffContext(allow_delete=frozenset({"daily__dev"})))
    assert delete.op is Op.DELETE
