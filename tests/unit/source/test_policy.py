"""Environments from a policy repo: a release commit cannot change prod's promotion or approvers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controller.model.manifest import Promotion
from controller.source.git import GitSource
from controller.source.policy import Policy, PolicyError
from controller.source.revision import revision
from controller.source.validate import load_repo


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def _commit(repo: Path, msg: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", msg)


def _set_prod(envs: Path, promotion: str, approvers: str = "") -> None:
    prod = envs / "prod.yaml"
    lines = [ln for ln in prod.read_text().splitlines() if not ln.startswith(("  promotion:", "  approvers:"))]
    lines.append(f"  promotion: {promotion}")
    if approvers:
        lines.append(f"  approvers: {{users: [{approvers}]}}")
    prod.write_text("\n".join(lines) + "\n")


@pytest.fixture
def repos(repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(release repo, policy repo): git repos; the policy says prod needs alice's approval."""
    _git(repo.parent, "init", "-q", "-b", "main", str(repo))
    _commit(repo, "release")
    policy = tmp_path / "policy"
    shutil.copytree(repo / "environments", policy / "environments")
    _set_prod(policy / "environments", "approval", "alice")
    _git(tmp_path, "init", "-q", "-b", "main", str(policy))
    _commit(policy, "policy")
    return repo, policy


def _snapshot(src: GitSource):  # type: ignore[no-untyped-def]
    commit = src.resolve()
    snap = load_repo(src.checkout(commit).root)
    assert not snap.problems, snap.problems
    return snap


def test_environments_come_from_the_policy_repo(repos: tuple[Path, Path], tmp_path: Path) -> None:
    release, policy = repos
    src = GitSource(str(release), cache_dir=tmp_path / "cache")
    src.policy = Policy(str(policy), cache_dir=tmp_path / "cache")
    snap = _snapshot(src)
    prod = snap.environment("prod").spec
    assert prod.promotion is Promotion.APPROVAL and prod.approvers is not None and prod.approvers.users == ["alice"]
    assert "host-metrics" in snap.releases

    # a release commit that weakens prod changes nothing the controller reads
    _set_prod(release / "environments", "automatic")
    (release / "environments" / "extra.yaml").write_text((release / "environments" / "dev.yaml").read_text()
                                                         .replace("name: dev", "name: extra"))
    _commit(release, "weaken prod")
    snap = _snapshot(src)
    assert snap.environment("prod").spec.promotion is Promotion.APPROVAL
    assert "extra" not in snap.environments


def test_a_policy_commit_is_a_new_tree_and_the_revision_is_unchanged(repos: tuple[Path, Path], tmp_path: Path) -> None:
    release, policy = repos
    src = GitSource(str(release), cache_dir=tmp_path / "cache")
    plain = load_repo(src.checkout(src.resolve()).root)
    src.policy = Policy(str(policy), cache_dir=tmp_path / "cache")
    commit = src.resolve()
    before = src.checkout(commit).root
    assert src.checkout(commit).root == before  # cached
    _set_prod(policy / "environments", "approval", "bob")
    _commit(policy, "bob approves now")
    commit2 = src.resolve()
    assert commit2 == commit  # the release commit did not move ...
    after = src.checkout(commit2).root
    assert after != before  # ... but the tree the controller reads did
    snap = load_repo(after)
    assert snap.environment("prod").spec.approvers.users == ["bob"]  # type: ignore[union-attr]
    rel = "host-metrics"
    assert revision(snap.release(rel), snap.root).digest == revision(plain.release(rel), plain.root).digest


def test_a_policy_path_inside_the_release_repo(repos: tuple[Path, Path], tmp_path: Path) -> None:
    release, _ = repos
    shutil.copytree(release / "environments", release / "platform" / "envs")
    _set_prod(release / "platform" / "envs", "approval", "carol")
    _commit(release, "platform-owned environments")
    src = GitSource(str(release), cache_dir=tmp_path / "cache")
    src.policy = Policy(None, "platform/envs/", cache_dir=tmp_path / "cache")
    snap = _snapshot(src)
    assert snap.environment("prod").spec.approvers.users == ["carol"]  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["../elsewhere", "/etc"])
def test_a_policy_path_may_not_leave_the_repo(path: str) -> None:
    with pytest.raises(PolicyError):
        Policy(None, path)


def test_a_missing_policy_path_is_a_clear_error(repos: tuple[Path, Path], tmp_path: Path) -> None:
    release, policy = repos
    src = GitSource(str(release), cache_dir=tmp_path / "cache")
    src.policy = Policy(str(policy), "nope", cache_dir=tmp_path / "cache")
    with pytest.raises(PolicyError, match="not a directory"):
        src.checkout(src.resolve())


def test_the_controller_rereads_its_snapshot_when_only_the_policy_changed(
    repos: tuple[Path, Path], tmp_path: Path
) -> None:
    from controller.engine.controller import Controller

    release, policy = repos
    src = GitSource(str(release), cache_dir=tmp_path / "cache")
    src.policy = Policy(str(policy), cache_dir=tmp_path / "cache")
    ctl = Controller(src, reconciler=None)  # type: ignore[arg-type]  # snapshot() does not use it
    first = ctl.snapshot()
    assert ctl.snapshot() is first  # same commit, same policy: the snapshot is kept
    _set_prod(policy / "environments", "automatic")
    _commit(policy, "prod automatic")
    second = ctl.snapshot()
    assert second is not first and second.commit == first.commit
    assert second.environment("prod").spec.promotion is Promotion.AUTOMATIC
