"""approval, applicability, evaluating a release's gates, and the verdict's ledger/status shapes."""

from __future__ import annotations

from datetime import timedelta

from gate_fakes import MANIFESTS, NOW, FakeData, make_ctx, metric_rows

from controller.audit import ledger
from controller.model.errors import TransientBackendError
from controller.model.manifest import ApprovalGate, DataQualityGate
from controller.model.reasons import Verdict
from controller.rollout.gates import applicable, default_jobs, default_tables, evaluate, evaluate_all

GATE = ApprovalGate(name="prod-approval", type="approval", stages=["prod"])


REV = "sha256:" + "a" * 64


def test_approved_passes_and_names_the_approver() -> None:
    data = FakeData(approvals={("host-metrics", "prod", "1.0.0", REV): "alice"})
    v = evaluate(GATE, make_ctx("prod", revision=REV), data)
    assert v.verdict is Verdict.PASS
    assert v.message == "approved by alice"
    assert v.evidence["approver"] == "alice"
    assert v.evidence["revision"] == REV


def test_unapproved_waits() -> None:
    data = FakeData(approvals={("host-metrics", "prod", "0.9.0", REV): "alice"})  # another version
    v = evaluate(GATE, make_ctx("prod", revision=REV), data)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert v.message == "awaiting approval: pipectl approve host-metrics --stage prod"


def test_approval_of_other_content_under_the_same_version_does_not_count() -> None:
    data = FakeData(approvals={("host-metrics", "prod", "1.0.0", "sha256:" + "b" * 64): "alice"})
    assert evaluate(GATE, make_ctx("prod", revision=REV), data).verdict is Verdict.INCONCLUSIVE
    # nor does any approval when the revision being judged is unknown
    data = FakeData(approvals={("host-metrics", "prod", "1.0.0", None): "alice"})
    assert evaluate(GATE, make_ctx("prod"), data).verdict is Verdict.INCONCLUSIVE


def test_approval_store_unavailable_is_inconclusive() -> None:
    class Down(FakeData):
        def approval(self, release: str, stage: str, version: str, revision: str | None) -> str | None:
            raise TransientBackendError("store", "locked")

    assert evaluate(GATE, make_ctx("prod", revision=REV), Down()).verdict is Verdict.INCONCLUSIVE


def test_applicable() -> None:
    everywhere = DataQualityGate(name="q", type="dataQuality", query="SELECT 1", expect="> 0")
    assert all(applicable(everywhere, s) for s in ("dev", "staging", "canary", "prod"))
    assert applicable(GATE, "prod") and not applicable(GATE, "staging")


def test_evaluate_all_runs_the_gates_of_the_stage_in_manifest_order() -> None:
    ctx0 = make_ctx("dev")
    ctx = make_ctx(
        "dev",
        tables=default_tables(ctx0.release, ctx0.stage_ctx),
        jobs=default_jobs(ctx0.release, ctx0.stage_ctx),
        schemas={"host-metric-event": (MANIFESTS / "schemas" / "host_metric_event.avsc").read_text()},
    )
    data = FakeData()
    data.table("dev_telemetry.host_metrics_1m__v1_0_0", metric_rows(NOW - timedelta(minutes=3), 1))
    got = [(v.name, v.verdict) for v in evaluate_all(ctx, data)]
    # the example release: dataQuality is staging+ only, canaryComparison canary only, approval prod
    assert got == [("schema-compatible", Verdict.PASS), ("keeps-up", Verdict.FAIL)]


def test_verdict_converts_to_status_and_ledger_shapes() -> None:
    v = evaluate(GATE, make_ctx("prod"), FakeData())
    r = v.to_result()
    assert (r.name, r.type, r.verdict, r.message) == (v.name, "approval", Verdict.INCONCLUSIVE, v.message)
    dumped = v.model_dump(mode="json")
    assert dumped == {
        "name": "prod-approval",
        "type": "approval",
        "verdict": "inconclusive",
        "message": v.message,
        "evidence": {"release": "host-metrics", "stage": "prod", "version": "1.0.0"},
    }
    # the audit ledger's model has the same fields (the pure core may not import the ledger)
    assert ledger.GateVerdict.model_validate(dumped).model_dump(mode="json") == dumped
