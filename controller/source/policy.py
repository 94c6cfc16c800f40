"""Environments from a policy repo: a release commit cannot weaken a stage's promotion policy.

``pipectl controller run --policy-repo PATH_OR_URL [--policy-path environments]`` reads every
``Environment`` (endpoints, ``promotion``, ``approvers``) from a separate git repository that
release authors cannot commit to; ``--policy-path DIR`` alone reads them from ``DIR`` of the
release repo itself (protect that path with code owners). Either way the release repo's own
``environments/`` is ignored.

How: the git source's checkout of a release commit becomes an *overlay* tree — the release tree
(hard links, it is immutable) with ``environments/`` replaced by the policy's files — so repo
loading and validation (``controller.source.validate.load_repo``) run unchanged on it. An overlay
is cached per (release commit, digest of the policy's files); a policy commit makes a new overlay,
so the controller re-reads its snapshot and re-plans every release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import structlog

from controller.model.errors import PipectlError
from controller.source.git import GitSource
from controller.source.loader import iter_yaml_files

log = structlog.get_logger(__name__)

ENVIRONMENTS = "environments"
MAX_OVERLAYS = 20


class PolicyError(PipectlError):
    pass


class Policy:
    """Where Environment manifests come from: a policy repo (URL, git repo or plain directory) and a
    path inside it, or a path inside the release repo (``repo=None``)."""

    def __init__(
        self, repo: str | None, path: str = ENVIRONMENTS, branch: str = "main", cache_dir: Path | None = None
    ):
        self.path = path.strip().rstrip("/") or "."
        if Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise PolicyError(f"--policy-path {path!r} must be a relative path inside the repository")
        self.repo = repo
        cache = (cache_dir or Path(".pipectl")) / "policy"
        self.source = GitSource(repo, branch, cache_dir=cache) if repo else None
        self.commit: str | None = None
        self._lock = threading.Lock()

    @property
    def describe(self) -> str:
        where = self.repo or "the release repo"
        return f"{where}:{self.path}" + (f"@{self.commit[:12]}" if self.commit else "")

    def refresh(self) -> None:
        """Resolve the policy repo's branch now (fetching a URL); the next overlays use it."""
        if self.source is not None:
            self.commit = self.source.resolve()

    def environments_dir(self, release_root: Path) -> Path:
        if self.source is not None and self.source.is_git and self.commit is None:
            self.refresh()
        base = self.source.checkout(self.commit).root if self.source is not None else release_root
        d = (base / self.path).resolve()
        if d != base.resolve() and base.resolve() not in d.parents:
            raise PolicyError(f"policy path {self.path!r} escapes {base}")
        if not d.is_dir():
            raise PolicyError(f"policy path {self.path!r} is not a directory in {self.repo or release_root}")
        return d

    def overlay(self, release_root: Path, commit: str | None, cache_dir: Path) -> Path:
        """The release tree with ``environments/`` replaced by the policy's Environment files."""
        envs = self.environments_dir(release_root)
        if self.source is None and envs == (release_root / ENVIRONMENTS).resolve():
            return release_root  # the release repo's own environments/: nothing to replace
        files = sorted(iter_yaml_files(envs))
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(envs)).encode() + b"\0" + f.read_bytes() + b"\0")
        key = f"{commit or _tree_stamp(release_root)}-{h.hexdigest()[:16]}"
        dest = cache_dir / "policy-trees" / key
        with self._lock:
            if not dest.exists():
                _build(release_root, envs, files, dest)
                _prune(dest.parent, keep=dest.name)
        return dest


def _tree_stamp(root: Path) -> str:
    """A plain (non-git) release directory changes in place: key its overlay by every file's
    path, size and mtime."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "worktree-" + h.hexdigest()[:16]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _build(release_root: Path, envs: Path, files: list[Path], dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        release_root,
        tmp,
        symlinks=True,
        copy_function=_link_or_copy,
        ignore=lambda d, names: [ENVIRONMENTS] if Path(d) == release_root and ENVIRONMENTS in names else [],
    )
    if (release_root / ENVIRONMENTS).is_dir():
        log.info("release repo environments/ ignored (from the policy instead)", root=str(release_root))
    for f in files:
        target = tmp / ENVIRONMENTS / f.relative_to(envs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    (tmp / ENVIRONMENTS).mkdir(exist_ok=True)
    tmp.rename(dest)


def _prune(parent: Path, keep: str) -> None:
    trees = sorted((p for p in parent.iterdir() if not p.name.endswith(".tmp")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in trees[MAX_OVERLAYS:]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)
