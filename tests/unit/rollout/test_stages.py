"""Stage progression and gate judgement (pure)."""

from __future__ import annotations

from controller.model.manifest import Promotion
from controller.model.reasons import Phase, Reason, Verdict
from controller.rollout.stages import StageFacts, Step, judge, plan_steps

A, M = Promotion.AUTOMATIC, Promotion.APPROVAL


def steps(version: str, *facts: StageFacts) -> list[tuple[str, Step]]:
    return [(s, st) for s, st, _ in plan_steps(version, facts)]


def test_fresh_release_deploys_first_stage() -> None:
    got = steps("1.0.0", StageFacts("dev", A), StageFacts("staging", A), StageFacts("prod", M))
    assert got == [("dev", Step.DEPLOY), ("staging", Step.NOT_REACHED), ("prod", Step.NOT_REACHED)]


def test_succeeded_stages_stay_in_sync_and_next_deploys() -> None:
    got = steps(
        "1.0.0",
        StageFacts("dev", A, "1.0.0", Phase.SUCCEEDED),
        StageFacts("staging", A, "0.9.0", Phase.SUCCEEDED),
    )
    assert got == [("dev", Step.IN_SYNC), ("staging", Step.DEPLOY)]


def test_prod_waits_for_approval_then_deploys() -> None:
    done = StageFacts("canary", A, "1.0.0", Phase.SUCCEEDED)
    assert steps("1.0.0", done, StageFacts("prod", M))[-1] == ("prod", Step.AWAIT_APPROVAL)
    assert steps("1.0.0", done, StageFacts("prod", M, approved_by="alice"))[-1] == ("prod", Step.DEPLOY)


def test_rolled_back_version_halts() -> None:
    got = steps(
        "1.1.0",
        StageFacts("dev", A, "1.1.0", Phase.SUCCEEDED),
        StageFacts("canary", A, "1.1.0", Phase.ROLLED_BACK),
        StageFacts("prod", M, "1.0.0", Phase.SUCCEEDED),
    )
    assert got == [("dev", Step.IN_SYNC), ("canary", Step.HALTED), ("prod", Step.NOT_REACHED)]


def test_blocked_names_the_dependency() -> None:
    [(stage, step, why)] = plan_steps("1.0.0", [StageFacts("dev", A, waiting_on=("telemetry-common",))])
    assert (stage, step) == ("dev", Step.BLOCKED)
    assert why == "waiting for telemetry-common dev Succeeded"


def test_judge() -> None:
    assert judge([("a", Verdict.PASS, "")], True).phase is Phase.SUCCEEDED
    out = judge([("a", Verdict.PASS, ""), ("b", Verdict.FAIL, "3% fewer rows")], True)
    assert (out.phase, out.reason) == (Phase.ROLLED_BACK, Reason.GATE_FAILED)
    assert out.message == "gate b failed: 3% fewer rows"
    assert judge([("b", Verdict.FAIL, "x")], False).phase is Phase.FAILED
    assert judge([("a", Verdict.INCONCLUSIVE, "")], True).phase is Phase.VERIFYING
    assert judge([], True).phase is Phase.SUCCEEDED
