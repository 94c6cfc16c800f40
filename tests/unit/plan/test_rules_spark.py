"""The Spark job rule's reasons and helpers (the actions themselves are golden cases: job-*)."""

from __future__ import annotations

from controller.model.reasons import Reason
from controller.plan.actions import DiffContext, Op
from controller.plan.resources import Owner, StreamingJobResource
from controller.plan.rules.spark import (
    CODE_CHANGED_NOTE,
    diff_job,
    effective_checkpoint,
    option,
    parse_args,
)

CK = "/ck/dev/job"


def job(**kw: object) -> StreamingJobResource:
    base: dict[str, object] = {
        "name": "dev-r-job", "owner": Owner(release="r", version="1.0.0"), "version": "1.0.0",
        "entrypoint": "jobs/j.py", "entrypoint_digest": "sha256:" + "1" * 64,
        "args": ["--topic", "dev.t", "--checkpoint", CK, "--version", "1.0.0"],
        "conf": {"spark.sql.shuffle.partitions": "2"}, "checkpoint": CK,
    }
    base.update(kw)
    return StreamingJobResource.model_validate(base)


def test_code_change_in_place_is_an_update_that_warns_about_state() -> None:
    [a] = diff_job(job(entrypoint_digest="sha256:" + "2" * 64), job(), DiffContext())
    assert a.op is Op.UPDATE
    assert CODE_CHANGED_NOTE in a.reason
    assert f"checkpoint {CK}" in a.reason


def test_blue_green_update_is_not_refused_and_names_the_checkpoint() -> None:
    desired = job(strategy="blueGreen", version="1.1.0", args=["--topic", "dev.t2", "--checkpoint", CK])
    [a] = diff_job(desired, job(strategy="blueGreen"), DiffContext())
    assert a.op is Op.UPDATE and a.reason_code is None
    assert "progressive delivery deploys each version as its own job" in a.reason
    assert f"checkpoint {CK} " in a.reason


def test_refusal_names_each_incompatible_field_and_why() -> None:
    desired = job(args=["--topic", "dev.t2", "--checkpoint", CK, "--version", "1.0.0"],
                  conf={"spark.sql.shuffle.partitions": "8"})
    [a] = diff_job(desired, job(), DiffContext())
    assert a.op is Op.REFUSE and a.reason_code == Reason.CHECKPOINT_INCOMPATIBLE
    assert "args.--topic" in a.reason and "subscribed topics" in a.reason
    assert "conf.spark.sql.shuffle.partitions" in a.reason
    assert "blueGreen" in a.reason
    assert [c.field for c in a.changes] == ["args.--topic", "conf.spark.sql.shuffle.partitions"]


def test_not_running_start_reason() -> None:
    [a] = diff_job(job(), job(running=False), DiffContext())
    assert a.op is Op.CREATE and a.reason.startswith("not running")
    assert a.desired == job()


def test_positional_args_still_guard_the_topic() -> None:
    desired = job(args=["in.json", "--topic", "dev.t2"])
    [a] = diff_job(desired, job(args=["in.json", "--topic", "dev.t"]), DiffContext())
    assert a.op is Op.REFUSE
    assert str(a.changes[0]) == "args.--topic: dev.t → dev.t2"


def test_parse_args() -> None:
    assert parse_args(["--a", "1", "--b=2", "--flag"]) == {"--a": "1", "--b": "2", "--flag": "true"}
    assert parse_args(["pos", "--a", "1"]) is None
    assert parse_args(["--a", "1", "--a", "2"]) is None
    assert option(["--a", "1", "--a=2"], "--a") == "2"
    assert option(["--ab", "1"], "--a") is None


def test_effective_checkpoint() -> None:
    assert effective_checkpoint(job()) == CK
    # per-version checkpoints come from desired state (plan.desired.checkpoint_dir), not the rule
    assert effective_checkpoint(job(strategy="canary", checkpoint=CK + "/v2_0_0", version="2.0.0")) == CK + "/v2_0_0"


def test_handing_the_registry_to_a_running_job_is_a_restart_not_a_refusal() -> None:
    """``spec.schemaRegistry`` set on an environment adds ``--schema-registry``/``--subject``
    (``controller.plan.desired.registry_args``): an in-place job restarts on its checkpoint."""
    registry = ["--schema-registry", "http://ctl:8088/schema-registry", "--subject", "t-value"]
    desired = job(args=[*job().args, *registry])
    [a] = diff_job(desired, job(), DiffContext())
    assert a.op is Op.UPDATE and a.reason_code is None
    assert [(c.field, c.old, c.new) for c in a.changes] == [
        ("args.--schema-registry", None, "http://ctl:8088/schema-registry"), ("args.--subject", None, "t-value"),
    ]
    assert f"restart on checkpoint {CK}" in a.reason
