"""Git source: resolve a branch to one commit per pass and materialize that commit's tree.

``repo`` may be a local path (a git work tree or a bare repo) or a URL; URLs are fetched into a
cache under the state dir. A plain directory that is not a git repository is read as it is
(commit ``None``), which is what ``pipectl plan --repo manifests`` uses. All git calls are argv
lists; nothing from a manifest reaches a shell.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from controller.model.errors import PipectlError

if TYPE_CHECKING:
    from controller.source.policy import Policy

log = structlog.get_logger(__name__)


class GitError(PipectlError):
    pass


def _git(*args: str, cwd: Path | None = None, timeout: float = 120) -> bytes:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {args[0]}: {e}") from e
    if r.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def _is_url(repo: str) -> bool:
    return "://" in repo or repo.startswith("git@")


@dataclass
class Checkout:
    root: Path
    commit: str | None


class GitSource:
    def __init__(
        self,
        repo: str,
        branch: str = "main",
        cache_dir: Path = Path(".pipectl/git"),
        subdir: str = "",
        *,
        worktree: bool = False,
    ):
        self.repo = repo
        self.branch = branch
        self.cache_dir = cache_dir
        self.subdir = subdir.strip("/")
        self._plain_dir: Path | None = None
        self._lock = threading.Lock()  # workers check out the same commit at once
        self.policy: Policy | None = None
        """Environments from a policy repo (``controller.source.policy``): checkouts are overlays."""
        if not _is_url(repo):
            p = Path(repo).resolve()
            if not p.exists():
                raise GitError(f"repository {repo!r} does not exist")
            probe = subprocess.run(
                ["git", "-C", str(p), "rev-parse", "--show-toplevel", "--show-prefix"],
                capture_output=True,
                check=False,
                text=True,
            )
            if probe.returncode != 0 or worktree:
                # not a repository, or the one-shot commands' view: the files as they are on disk
                self._plain_dir = p
            else:
                top, _, prefix = probe.stdout.partition("\n")
                prefix = prefix.strip().strip("/")
                if prefix:
                    self.repo = top.strip()
                    self.subdir = f"{prefix}/{self.subdir}".strip("/")

    @property
    def is_git(self) -> bool:
        return self._plain_dir is None

    def _mirror(self) -> Path:
        key = hashlib.sha256(self.repo.encode()).hexdigest()[:16]
        mirror = self.cache_dir / f"{key}.git"
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            _git("clone", "--bare", "--quiet", self.repo, str(mirror))
        return mirror

    def resolve(self) -> str | None:
        """The commit SHA the branch points at now (fetching first for URLs)."""
        if self.policy is not None:
            self.policy.refresh()
        if self._plain_dir is not None:
            return None
        if _is_url(self.repo):
            mirror = self._mirror()
            _git(
                "fetch",
                "--quiet",
                "--prune",
                "origin",
                f"+refs/heads/{self.branch}:refs/heads/{self.branch}",
                cwd=mirror,
            )
            return _git("rev-parse", f"refs/heads/{self.branch}", cwd=mirror).decode().strip()
        return _git("rev-parse", f"refs/heads/{self.branch}", cwd=Path(self.repo)).decode().strip()

    def checkout(self, commit: str | None) -> Checkout:
        """The tree of ``commit`` as a directory (cached per commit; trees are immutable); with a
        policy, that tree with the policy's environments."""
        out = self._checkout(commit)
        if self.policy is None:
            return out
        return Checkout(self.policy.overlay(out.root, out.commit, self.cache_dir), out.commit)

    def _checkout(self, commit: str | None) -> Checkout:
        if self._plain_dir is not None or commit is None:
            root = self._plain_dir or Path(self.repo).resolve()
            return Checkout(root / self.subdir if self.subdir else root, None)
        dest = self.cache_dir / "trees" / commit
        with self._lock:
            if not dest.exists():
                self._extract(commit, dest)
        return Checkout(dest / self.subdir if self.subdir else dest, commit)

    def _git_dir(self) -> Path:
        return self._mirror() if _is_url(self.repo) else Path(self.repo)

    def pin(self, ref: str, commit: str | None) -> None:
        """Keep ``commit`` reachable under ``refs/pipectl/<ref>`` in the controller's clone (for a
        local repo: the repo itself), so a force-push and ``git gc`` cannot take a known-good
        commit away. A no-op for plain directories."""
        if commit is None or self._plain_dir is not None:
            return
        _git("update-ref", f"refs/pipectl/{ref}", commit, cwd=self._git_dir())

    # --- history (pipectl's schema registry rebuilds its versions and ids from it) ---------

    def first_parent(self, head: str, since: str | None = None) -> list[str]:
        """Commits on ``head``'s first-parent line, oldest first (after ``since`` when given)."""
        if self._plain_dir is not None:
            return []
        out = _git("rev-list", "--first-parent", "--reverse", f"{since}..{head}" if since else head,
                   cwd=self._git_dir())
        return out.decode().split()

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether ``old`` is on ``new``'s history (False after a force-push took it away)."""
        if self._plain_dir is not None:
            return False
        r = subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=self._git_dir(),
                           capture_output=True, check=False)
        return r.returncode == 0

    def files_at(self, commit: str, under: str) -> list[str]:
        """Paths (relative to the repo root) of the files below ``under`` in ``commit``'s tree."""
        out = _git("ls-tree", "-r", "-z", "--name-only", commit, "--", under, cwd=self._git_dir())
        return [p for p in out.decode("utf-8", "replace").split("\0") if p]

    def read_at(self, commit: str, path: str) -> bytes | None:
        """The content of ``path`` (relative to the repo root) in ``commit``, or None if absent."""
        r = subprocess.run(["git", "cat-file", "blob", f"{commit}:{path}"], cwd=self._git_dir(),
                           capture_output=True, check=False)
        return r.stdout if r.returncode == 0 else None

    def _extract(self, commit: str, dest: Path) -> None:
        src = self._git_dir()
        probe = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=src, capture_output=True, check=False
        )
        if probe.returncode != 0:
            raise GitError(
                f"commit {commit} is not in the repository (history rewritten and garbage-collected?); "
                "it is pinned under refs/pipectl/ only once pipectl has promoted it"
            )
        data = _git("archive", "--format=tar", commit, cwd=src)
        tmp = dest.with_name(commit + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter=_safe_members(commit))  # noqa: S202 - members filtered
        tmp.rename(dest)
        self._prune_trees(keep=commit)

    def _prune_trees(self, keep: str, max_trees: int = 20) -> None:
        trees = sorted((self.cache_dir / "trees").iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in trees[max_trees:]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


def _safe_members(commit: str) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """tarfile's ``data`` filter, except that a member it refuses (an absolute or escaping symlink,
    a device file) is left out instead of failing the whole checkout: only the releases that
    reference it see it missing (validation names the file), every other release goes on."""

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as e:
            log.warning("unsafe file left out of the checkout", commit=commit, path=member.name, error=str(e))
            return None

    return keep
