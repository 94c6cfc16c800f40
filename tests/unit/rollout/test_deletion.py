"""The finalizer's pure decisions: the deletion policy annotation, adding and removing the
finalizer, the release declaring nothing, and what a deletion waits for."""

from __future__ import annotations

from controller.rollout.deletion import (
    Policy,
    StageTeardown,
    decide,
    policy_of,
    teardown_release,
    with_finalizer,
    without_finalizer,
)
from controller.source.objects import DELETION_POLICY, FINALIZER


def test_the_deletion_policy_prunes_unless_the_annotation_says_orphan() -> None:
    assert policy_of(None) == (Policy.PRUNE, "")
    assert policy_of("prune") == (Policy.PRUNE, "")
    assert policy_of("orphan") == (Policy.ORPHAN, "")
    policy, problem = policy_of("Orphan")
    assert policy is Policy.PRUNE  # a typo never orphans: every delete still needs an approval
    assert problem == f"metadata.annotations.{DELETION_POLICY}: 'Orphan' is neither prune nor orphan; pruning"


def test_the_finalizer_is_added_once_and_removed_alone() -> None:
    assert with_finalizer([]) == [FINALIZER]
    assert with_finalizer(["other.io/keep"]) == ["other.io/keep", FINALIZER]
    assert with_finalizer(["other.io/keep", FINALIZER]) is None  # nothing to patch
    assert without_finalizer(["other.io/keep", FINALIZER]) == ["other.io/keep"]
    assert without_finalizer([FINALIZER]) == []
    assert without_finalizer(["other.io/keep"]) is None


def test_the_teardown_release_declares_nothing() -> None:
    rel = teardown_release("metrics", "1.2.0", ["dev", "prod"])
    assert (rel.name, rel.spec.version, rel.spec.rollout.stages) == ("metrics", "1.2.0", ["dev", "prod"])
    s = rel.spec
    assert not (s.topics or s.tables or s.views or s.streaming_jobs or s.dags or s.transforms or s.schemas)


def test_done_only_when_every_stage_is_clear() -> None:
    done = decide("metrics", [StageTeardown("dev"), StageTeardown("prod")])
    assert done.done and done.message == f"every resource of metrics is deleted; finalizer {FINALIZER} removed"
    assert not decide("metrics", [StageTeardown("dev"), StageTeardown("prod", changed=True)]).done


def test_the_message_names_each_action_awaiting_approval_and_its_command() -> None:
    stages = [
        StageTeardown("prod", pending=("Topic/x.events/delete",), left=("Topic/x.events",)),
        StageTeardown("dev", pending=("Table/dev_x.t/delete", "Topic/dev.x.events/delete"),
                      left=("Table/dev_x.t", "Topic/dev.x.events", "View/dev_x.v"),
                      errors=("Dag/x__dev/delete: refused (not owned)",)),
    ]
    d = decide("metrics", stages, "bad annotation")
    assert not d.done
    assert d.message == (
        "deletion waits for approval of 3 destructive action(s): "
        "pipectl approve metrics --stage prod --destructive Topic/x.events/delete; "
        "pipectl approve metrics --stage dev --destructive Table/dev_x.t/delete; "
        "pipectl approve metrics --stage dev --destructive Topic/dev.x.events/delete. "
        "stage dev: Dag/x__dev/delete: refused (not owned). "
        "stage dev: still owns View/dev_x.v. "
        "bad annotation"
    )


def test_a_pass_that_applied_something_is_checked_again() -> None:
    d = decide("metrics", [StageTeardown("dev", changed=True), StageTeardown("prod")])
    assert d == (d.__class__(False, "tearing down (applied at dev); checking that nothing is left"))
