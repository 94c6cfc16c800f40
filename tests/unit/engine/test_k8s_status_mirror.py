"""StatusMirror: the patch it sends, and that it never fails a pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from controller.engine.k8s_status import StatusMirror
from controller.model.reasons import Phase, Verdict
from controller.model.status import GateResult, ReleaseStatus, StageStatus


class CustomObjects:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((args, kwargs))
        if self.error:
            raise self.error
        return {}


def test_mirror_replaces_the_status_with_the_camelcase_model() -> None:
    api = CustomObjects()
    status = ReleaseStatus(
        version="1.2.0",
        current_stage="canary",
        phase=Phase.VERIFYING,
        stages={
            "canary": StageStatus(
                version="1.2.0",
                phase=Phase.VERIFYING,
                gates=[GateResult(name="freshness", verdict=Verdict.PASS)],
                last_transition_time=datetime(2024, 6, 1, tzinfo=UTC),
            )
        },
    )
    assert StatusMirror(api, "data-platform").mirror("host-metrics", status) is True

    ((args, kwargs),) = api.calls
    assert args[:5] == ("pipectl.dev", "v1alpha1", "data-platform", "pipelinereleases", "host-metrics")
    (op,) = args[5]
    assert op["op"] == "add" and op["path"] == "/status"
    assert op["value"]["currentStage"] == "canary"
    assert op["value"]["stages"]["canary"]["lastTransitionTime"] == "2024-06-01T00:00:00Z"
    assert "observedCommit" not in op["value"]  # None fields left out
    assert kwargs == {"_content_type": "application/json-patch+json"}


@pytest.mark.parametrize("status", [404, 422, 500])
def test_api_errors_are_reported_not_raised(status: int) -> None:
    api = CustomObjects(ApiException(status=status))
    assert StatusMirror(api).patch_status("x", {"phase": "Failed"}) is False


def test_disabled_mirror_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_STATUS_MIRROR", raising=False)
    mirror = StatusMirror.from_env()
    assert not mirror.enabled
    assert mirror.patch_status("x", {"phase": "Succeeded"}) is False
