"""The git source: unsafe links stay out of a checkout, known-good commits are pinned, and a commit
that history rewriting took away is a clear error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from controller.source.git import GitError, GitSource


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "releases").mkdir(parents=True)
    (r / "releases" / "a.yaml").write_text("a: 1\n")
    _git(r.parent, "init", "-q", "-b", "main", str(r))
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "one")
    return r


def test_an_absolute_symlink_is_left_out_of_the_checkout_not_fatal(repo: Path, tmp_path: Path) -> None:
    os.symlink("/etc/passwd", repo / "releases" / "evil.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "absolute link")
    src = GitSource(str(repo), cache_dir=tmp_path / "cache")
    tree = src.checkout(src.resolve()).root
    assert (tree / "releases" / "a.yaml").read_text() == "a: 1\n"
    assert not (tree / "releases" / "evil.yaml").exists()


def test_pin_keeps_a_known_good_commit_after_a_force_push_and_gc(repo: Path, tmp_path: Path) -> None:
    src = GitSource(str(repo), cache_dir=tmp_path / "cache")
    good = src.resolve()
    assert good is not None
    src.pin("known-good/a/prod", good)
    assert _git(repo, "rev-parse", "refs/pipectl/known-good/a/prod") == good
    # rewrite history: the known-good commit is no longer on the branch
    _git(repo, "checkout", "-q", "--orphan", "rewritten")
    _git(repo, "commit", "-qm", "rewritten", "--allow-empty")
    _git(repo, "branch", "-f", "main", "rewritten")
    _git(repo, "reflog", "expire", "--expire=now", "--all")
    _git(repo, "gc", "-q", "--prune=now")
    fresh = GitSource(str(repo), cache_dir=tmp_path / "cache2")
    assert (fresh.checkout(good).root / "releases" / "a.yaml").exists()


def test_a_commit_gone_from_history_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    src = GitSource(str(repo), cache_dir=tmp_path / "cache")
    with pytest.raises(GitError, match="is not in the repository"):
        src.checkout("0" * 40)
