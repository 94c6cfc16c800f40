"""PipelineRelease objects as manifests: what is kept of an object, and that ``load_repo`` validates
them exactly as files under releases/ (problems name ``namespace/name`` and the field path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.source.objects import object_ref, release_document
from controller.source.validate import load_repo


def as_object(repo: Path, ns: str = "team-a", **meta: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo / "releases" / "host-metrics.yaml").read_text())
    doc["metadata"].update({
        "namespace": ns, "uid": "u-1", "generation": 3, "resourceVersion": "812",
        "creationTimestamp": "2026-12-05T10:00:00Z", "managedFields": [{"manager": "kubectl"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"},
        **meta,
    })
    doc["status"] = {"phase": "Succeeded"}
    return doc


def test_the_document_keeps_name_labels_annotations_and_spec_only(repo: Path) -> None:
    obj = as_object(repo, labels={"app": "m"})
    shown, text = release_document(obj)
    doc = yaml.safe_load(text)
    assert shown == "team-a/host-metrics"
    assert doc["metadata"] == {"name": "host-metrics", "labels": {"app": "m"}, "annotations": {"team": "a"}}
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"} and doc["spec"] == obj["spec"]


def test_object_ref_is_the_revision_identity(repo: Path) -> None:
    ref = object_ref(as_object(repo, finalizers=["pipectl.dev/prune"]))
    assert (ref.shown, ref.revision, ref.deleting, ref.finalizers) == (
        "team-a/host-metrics", "u-1@3", False, ("pipectl.dev/prune",))
    assert object_ref(as_object(repo, deletionTimestamp="2026-12-05T11:00:00Z")).deleting is True


def test_objects_replace_the_release_files_and_validate_the_same(repo: Path) -> None:
    good = as_object(repo, "team-a")
    # files under releases/ are not read: the file itself would be a duplicate, the stray a problem
    (repo / "releases" / "stray.yaml").write_text("not: a release\n")
    snap = load_repo(repo, release_docs=[release_document(good)])
    assert snap.problems == [] and list(snap.releases) == ["host-metrics"]
    assert snap.releases["host-metrics"].file == "team-a/host-metrics"

    bad = as_object(repo, "team-b")
    bad["spec"]["rollout"]["stages"] = ["dev", "nowhere"]
    snap = load_repo(repo, release_docs=[release_document(bad)])
    assert list(snap.releases) == [] and list(snap.invalid_releases) == ["host-metrics"]
    msgs = [str(p) for p in snap.invalid_releases["host-metrics"]]
    assert any(m.startswith("team-b/host-metrics:") and "spec.rollout.stages" in m and "nowhere" in m
               for m in msgs), msgs


def test_the_same_name_in_two_namespaces_is_a_duplicate(repo: Path) -> None:
    docs = [release_document(as_object(repo, ns)) for ns in ("team-a", "team-b")]
    snap = load_repo(repo, release_docs=docs)
    dupes = [str(p) for p in snap.problems if "duplicate" in p.message]
    assert dupes == ["team-b/host-metrics:4: metadata.name: duplicate PipelineRelease 'host-metrics' "
                     "(also defined at team-a/host-metrics:4)"], dupes
