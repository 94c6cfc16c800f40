"""A deploy that changes a schema shows the producer/consumer order its compatibility level needs:
in the plan the controller's pass computes and in ``pipectl plan`` (``preview``) alike, as a note
and on the consumer job's action; a version that keeps the schema has no such note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.plan.resources import ResourceKind
from tests.unit.engine.test_plan_parity import planned_by_the_pass, previews
from tests.unit.engine.world import RELEASE, SCHEMA, World, release_yaml, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")

NOTE = (
    "schema event changes under BACKWARD: consumers first — this plan deploys the consumers of "
    "telemetry.metrics_events (agg); producers may write the new version only once the consumers run it "
    "at every stage they read"
)


def with_field(text: str) -> str:
    doc = json.loads(text)
    doc["fields"].append({"name": "dc", "type": "string", "default": ""})
    return json.dumps(doc)


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    return w


def test_a_schema_change_shows_its_order_in_the_pass_and_the_preview(world: World) -> None:
    files = repo_files()
    files["schemas/event.avsc"] = with_field(SCHEMA)
    files[f"releases/{RELEASE}.yaml"] = release_yaml("1.1.0")
    world.commit(files)
    before = previews(world, RELEASE)
    assert before["dev"].notes == [NOTE]
    [job] = [a for a in before["dev"].actions if a.kind is ResourceKind.STREAMING_JOB]
    assert job.reason.endswith("; schema order: consumers-first (event BACKWARD)"), job.reason
    # the pass's own plan (its green job's start offsets are recorded as it deploys, so the job's
    # arguments differ from the preview's; the order shown is the same)
    plan = planned_by_the_pass(world, RELEASE)["dev"]
    assert plan.notes == [NOTE]
    assert [a.reason for a in plan.actions] == [a.reason for a in before["dev"].actions]


def test_a_version_that_keeps_the_schema_has_no_note(world: World) -> None:
    files = repo_files()
    files[f"releases/{RELEASE}.yaml"] = release_yaml("1.1.0")
    files["jobs/metrics_agg.py"] = "print('aggregate v2')\n"
    world.commit(files)
    before = previews(world, RELEASE)
    assert before["dev"].actions and before["dev"].notes == []
    assert not any("schema order" in a.reason for a in before["dev"].actions)
