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


def test_judge_names_the_backends_an_inconclusive_gate_could_not_reach() -> None:
    out = judge([("rows", Verdict.INCONCLUSIVE, "presto: refused"), ("a", Verdict.PASS, "")], True, ["presto"])
    assert (out.phase, out.reason) == (Phase.VERIFYING, Reason.BACKEND_UNAVAILABLE)
    assert out.message == "waiting on gates: rows (presto unavailable)"
    # a failure still decides, outage or not
    assert judge([("rows", Verdict.INCONCLUSIVE, ""), ("b", Verdict.FAIL, "x")], True, ["presto"]).phase is Phase.ROLLED_BACK
    assert judge([("rows", Verdict.INCONCLUSIVE, "")], True).reason is Reason.GATE_INCONCLUSIVE


def test_a_canary_stands_down_when_its_target_rolled_its_version_back() -> None:
    dev = StageFacts("dev", A, "1.1.0", Phase.SUCCEEDED)
    prod = StageFacts("prod", A, "1.1.0", Phase.ROLLED_BACK)
    for canary_phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK):  # before and after it stood down
        canary = StageFacts("canary", A, "1.1.0", canary_phase, canary_of="prod")
        got = plan_steps("1.1.0", [dev, canary, prod])
        assert [(s, st) for s, st, _ in got] == [
            ("dev", Step.IN_SYNC),
            ("canary", Step.HOLD_TARGET),
            ("prod", Step.HALTED),
        ]
        assert got[1][2] == "prod RolledBack 1.1.0"
    # a new version not yet at the canary: still held while an earlier stage works on it
    canary = StageFacts("canary", A, "1.1.0", Phase.ROLLED_BACK, canary_of="prod")
    got = steps("1.2.0", StageFacts("dev", A, "1.1.0", Phase.SUCCEEDED), canary, prod)
    assert got == [("dev", Step.DEPLOY), ("canary", Step.HOLD_TARGET), ("prod", Step.NOT_REACHED)]
    # ... and deployed when it is the canary's turn
    new_dev = StageFacts("dev", A, "1.2.0", Phase.SUCCEEDED)
    got = steps("1.2.0", new_dev, canary, prod)
    assert got == [("dev", Step.IN_SYNC), ("canary", Step.DEPLOY), ("prod", Step.NOT_REACHED)]


def test_a_canary_runs_on_while_its_target_holds_an_earlier_version_for_other_reasons() -> None:
    canary = StageFacts("canary", A, "1.1.0", Phase.SUCCEEDED, canary_of="prod")
    waiting = StageFacts("prod", M, "1.0.0", Phase.SUCCEEDED)  # awaiting approval of 1.1.0
    assert steps("1.1.0", canary, waiting) == [("canary", Step.IN_SYNC), ("prod", Step.AWAIT_APPROVAL)]
    rolled_older = StageFacts("prod", A, "1.0.5", Phase.ROLLED_BACK)  # another version failed there
    assert steps("1.1.0", canary, rolled_older) == [("canary", Step.IN_SYNC), ("prod", Step.DEPLOY)]


def test_a_restore_under_way_comes_first_and_holds_the_later_stages() -> None:
    restoring = StageFacts("staging", A, "1.1.0", Phase.PROGRESSING, restoring="1.1.0")
    got = plan_steps("1.1.0", [StageFacts("dev", A, "1.1.0", Phase.SUCCEEDED), restoring, StageFacts("prod", A)])
    assert [(s, st) for s, st, _ in got] == [
        ("dev", Step.IN_SYNC),
        ("staging", Step.RESTORING),
        ("prod", Step.NOT_REACHED),
    ]
    assert got[1][2] == "rolling back 1.1.0"
    # a newer commit does not interrupt it: dev deploys 1.2.0, staging still finishes its restore
    got = plan_steps("1.2.0", [StageFacts("dev", A, "1.1.0", Phase.SUCCEEDED), restoring])
    assert [(s, st) for s, st, _ in got] == [("dev", Step.DEPLOY), ("staging", Step.RESTORING)]
    # a canary whose target is restoring its version stands down already
    canary = StageFacts("canary", A, "1.1.0", Phase.SUCCEEDED, canary_of="prod")
    prod = StageFacts("prod", A, "1.1.0", Phase.PROGRESSING, restoring="1.1.0")
    got = plan_steps("1.1.0", [canary, prod])
    assert [(s, st, why) for s, st, why in got] == [
        ("canary", Step.HOLD_TARGET, "prod is rolling back 1.1.0"),
        ("prod", Step.RESTORING, "rolling back 1.1.0"),
    ]
