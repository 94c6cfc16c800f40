"""The schemas each commit declares, read from git objects (no checkout): subjects from topics'
valueSchema/keySchema, per commit of the first-parent line, oldest first."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controller.model.manifest import Compatibility, SchemaFormat
from controller.source.git import GitSource
from controller.source.schema_history import history, in_snapshot
from controller.source.validate import load_repo

AVSC = "schemas/host_metric_event.avsc"
RELEASE = "releases/host-metrics.yaml"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def commit(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", msg)
    return git(repo, "rev-parse", "HEAD")


def with_field(text: str, name: str) -> str:
    doc = json.loads(text)
    doc["fields"].append({"name": name, "type": "string", "default": ""})
    return json.dumps(doc, indent=2)


def test_history_reads_every_commit_oldest_first(repo: Path, tmp_path: Path) -> None:
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    c1 = commit(repo, "one")
    v1 = (repo / AVSC).read_text()
    (repo / AVSC).write_text(with_field(v1, "dc"))
    c2 = commit(repo, "two: a field with a default")
    rel = (repo / RELEASE).read_text()
    (repo / RELEASE).write_text(rel.replace("spec:\n", "spec:\n  broken: [\n", 1))  # does not parse
    c3 = commit(repo, "three: the manifest is broken")

    src = GitSource(str(repo), cache_dir=tmp_path / "cache")
    steps = history(src, c3)
    assert [s.commit for s in steps] == [c1, c2, c3]
    first = steps[0].schemas
    assert [(d.subject, d.release, d.schema, d.format, d.compatibility) for d in first] == [
        ("telemetry.host_metrics-value", "host-metrics", "host-metric-event", SchemaFormat.AVRO,
         Compatibility.BACKWARD)
    ]
    assert first[0].text == v1
    assert "dc" in steps[1].schemas[0].text
    assert steps[2].schemas == ()  # a manifest that does not parse contributes nothing
    assert [s.commit for s in history(src, c3, since=c1)] == [c2, c3]
    assert not (tmp_path / "cache" / "trees").exists()  # read from git objects, nothing checked out


def test_a_repo_in_a_subdirectory_and_a_path_outside_it(repo: Path, tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    repo.rename(top / "manifests")
    sub = top / "manifests"
    git(top.parent, "init", "-q", "-b", "main", str(top))
    head = commit(top, "one")
    src = GitSource(str(sub), cache_dir=tmp_path / "cache")
    assert src.subdir == "manifests"
    [step] = history(src, head, subdir=src.subdir)
    assert [d.subject for d in step.schemas] == ["telemetry.host_metrics-value"]

    rel = (sub / RELEASE).read_text()
    (sub / RELEASE).write_text(rel.replace(f"path: {AVSC}", "path: ../../etc/passwd"))
    head = commit(top, "a schema path outside the repo")
    assert history(src, head, subdir=src.subdir)[-1].schemas == ()


def test_in_snapshot_reads_a_plain_tree(repo: Path) -> None:
    step = in_snapshot(load_repo(repo))
    assert step.commit is None
    assert [d.subject for d in step.schemas] == ["telemetry.host_metrics-value"]
    assert step.schemas[0].text == (repo / AVSC).read_text()
