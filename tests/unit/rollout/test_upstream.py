"""``rollout.upstream.served_version``: the dependsOn release's version a stage serves."""

from __future__ import annotations

import pytest

from controller.model.reasons import Phase
from controller.rollout.upstream import served_version


def test_a_stage_that_succeeded_serves_its_version() -> None:
    assert served_version(Phase.SUCCEEDED, "1.1.0", "1.1.0") == "1.1.0"


@pytest.mark.parametrize(
    "phase", [Phase.PENDING, Phase.PROGRESSING, Phase.VERIFYING, Phase.ROLLED_BACK, Phase.FAILED, None]
)
def test_otherwise_the_stage_serves_its_known_good(phase: Phase | None) -> None:
    assert served_version(phase, "1.1.0", "1.0.0") == "1.0.0"


def test_nothing_served_yet() -> None:
    assert served_version(Phase.PROGRESSING, "1.0.0", None) is None
