"""The live API fuzzed from its own OpenAPI document (schemathesis): a real ``pipectl controller
run`` on the local stack, a release of its own (a topic, a table, a view at stage dev), alice's
token. Every operation of ``/openapi.json`` is called with generated valid and invalid requests —
random release names, and the controller's real release — and must answer no 5xx, with a status
the document lists and a body that matches its schema. Bounded by ``MAX_EXAMPLES`` per operation
and mode (the whole test, controller start included, took 2 min on a shared 2-core box).

The webhook is fuzzed with the user's token (so it refuses, 401) and with the webhook secret
(``Authorization: Bearer <secret>``, accepted: 202). Rollbacks and destructive approvals run
against the controller's real request slot and plan: a generated stage that happens to name a real
one is answered like any other request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from ctlkit import (
    TOKEN,
    Ctl,
    drop_everything,
    free_port,
    init_repo,
    stage_env_yaml,
    status,
    token_for,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _release(name: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: 1.0.0
  topics:
    - name: rc.events
      partitions: 1
      replicationFactor: 1
  tables:
    - name: rc.counts
      columns: [{{name: k, type: string}}, {{name: n, type: bigint}}]
  views:
    - name: rc.counts_v
      table: rc.counts
  rollout:
    stages: [dev]
"""


@pytest.fixture
def live(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[tuple[str, str, str]]:
    uid, dags = unique_name, stack["airflow_dags_folder"]
    name = f"rc-{uid}"
    env = stage_env_yaml("dev", f"it{uid}.", f"it{uid}_", dags) + "  approvers: {users: [alice]}\n"
    repo = init_repo(tmp_path, {"environments/dev.yaml": env, "releases/rc.yaml": _release(name)}, "1.0.0")
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(parents=True)
    alice = token_for(state, "alice")
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    ctl.start()
    try:
        wait_for(lambda: (status(state, name).get("stages", {}).get("dev") or {}).get("phase") == "Succeeded",
                 180, "dev on 1.0.0", ctl.log)
        yield f"http://127.0.0.1:{ctl.port}", alice, name
    finally:
        ctl.stop()
        drop_everything(uid, [f"it{uid}_rc"], dags, None)
        log = (tmp_path / "controller.log").read_text()
        assert "api handler failed" not in log, log[-4000:]  # a 500 would have been logged there


SENT: list[str] = []  # every request made, by operation label


def _fuzz(op: Any, base: str, token: str, mode: GenerationMode, **fixed: Any) -> list[str]:
    """Run ``op``'s generated cases; the failures' texts (empty when none)."""
    failures: list[str] = []
    calls = [0]

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode, **fixed))
    def run(case: Any) -> None:
        response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        calls[0] += 1
        SENT.append(op.label)
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as e:  # schemathesis raises a FailureGroup (an exception group)
            failures.append(f"{op.label} [{mode.value}] -> {response.status_code}: {str(e)[:1500]}")

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:  # an operation without inputs has no invalid request
            return []
        raise
    assert calls[0] > 0, op.label
    return failures


def test_the_live_api_matches_its_openapi_document(live: tuple[str, str, str]) -> None:
    base, alice, name = live
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"GET /api/v1/releases", "POST /api/v1/releases/{name}/approve", "POST /hooks/git"} <= labels
    failures: list[str] = []
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(op, base, alice, mode)
            if "{name}" in op.path:  # the controller's own release, so handlers go past the 404
                failures += _fuzz(op, base, alice, mode, path_parameters={"name": name})
        if op.path == "/hooks/git":  # with the webhook secret: accepted
            failures += _fuzz(op, base, TOKEN, GenerationMode.POSITIVE)
    assert not failures, "\n\n".join(failures[:10])
    assert set(SENT) == labels and len(SENT) >= 10 * len(labels)
    print(f"{len(SENT)} requests to {len(labels)} operations, no failure")
