"""The registry at the controller's commit: kept in the state store, extended commit by commit,
and rebuilt from git history with the same ids when the store has lost it or history was rewritten."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controller.engine.registry_sync import KEY, RegistrySync
from controller.source.git import GitSource
from controller.source.validate import load_repo
from controller.store.db import Store

AVSC = "schemas/host_metric_event.avsc"
SUBJECT = "telemetry.host_metrics-value"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def change_schema(repo: Path, field: str) -> str:
    doc = json.loads((repo / AVSC).read_text())
    doc["fields"].append({"name": field, "type": "string", "default": ""})
    (repo / AVSC).write_text(json.dumps(doc))
    git(repo, "commit", "-qam", f"add {field}")
    return git(repo, "rev-parse", "HEAD")


def sync(repo: Path, tmp: Path, db: str) -> RegistrySync:
    src = GitSource(str(repo), cache_dir=tmp / "cache")
    return RegistrySync(Store(f"sqlite:///{tmp / db}"), src, lambda _c: load_repo(repo))


def ids(reg: object) -> list[tuple[int, int]]:
    return [(v.version, v.id) for v in reg.subjects[SUBJECT].versions]  # type: ignore[attr-defined]


def test_stored_extended_and_rebuilt_with_the_same_ids(repo: Path, tmp_path: Path) -> None:
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    c2 = change_schema(repo, "dc")
    kept = sync(repo, tmp_path, "a.db")
    at_c2 = kept.at(c2)
    assert ids(at_c2) == [(1, 1), (2, 2)]
    stored = kept.store.kv_get(KEY)
    assert stored is not None and json.loads(stored)["head"] == c2

    c3 = change_schema(repo, "rack")
    c4 = change_schema(repo, "zone")
    extended = kept.at(c4)  # folds c3 and c4 onto the stored registry
    assert extended.head == c4 and ids(extended) == [(1, 1), (2, 2), (3, 3), (4, 4)]

    lost = sync(repo, tmp_path, "fresh.db")  # the state store is lost: rebuilt from git history
    assert lost.store.kv_get(KEY) is None
    assert lost.at(c4) == extended
    assert lost.at(c3).head == c3  # an older head (a rollback of the controller) folds from scratch
    assert ids(lost.at(c3)) == [(1, 1), (2, 2), (3, 3)]


def test_a_force_push_rebuilds_from_the_new_history(repo: Path, tmp_path: Path) -> None:
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    change_schema(repo, "dc")
    s = sync(repo, tmp_path, "a.db")
    s.at(git(repo, "rev-parse", "HEAD"))
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    rewritten = change_schema(repo, "rack")  # the stored head is no longer on the branch
    reg = s.at(rewritten)
    assert ids(reg) == [(1, 1), (2, 2)]
    assert "rack" in reg.schemas[1].text and "dc" not in reg.schemas[1].text


def test_a_plain_directory_is_its_tree_alone(repo: Path, tmp_path: Path) -> None:
    s = sync(repo, tmp_path, "a.db")
    reg = s.at(None)
    assert ids(reg) == [(1, 1)] and reg.head is None
    assert s.store.kv_get(KEY) is None
