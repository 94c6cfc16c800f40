"""A release revision: its version plus a digest of everything it deploys.

The revision covers the manifest and every file it references (schemas, job entrypoints, DAG files,
transform SQL). Once any stage has deployed a version, that version's content is fixed: a later
commit that changes the content but keeps the version would otherwise reach every stage as
"drift repair", prod included, with no gate. ``changed_files`` names what differs so the person
who committed it knows what to bump.

Environments are not part of it: they are the platform's (endpoints, prefixes, promotion policy),
changed by platform commits for every release at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from controller.model.manifest import PipelineRelease

MANIFEST = "<manifest>"


@dataclass(frozen=True)
class Revision:
    version: str
    digest: str
    files: dict[str, str] = field(default_factory=dict)
    """Path (or ``<manifest>``) → sha256 of its content ("missing" when absent)."""


def referenced_files(rel: PipelineRelease) -> list[str]:
    s = rel.spec
    paths = [x.path for x in s.schemas] + [j.entrypoint for j in s.streaming_jobs]
    paths += [d.path for d in s.dags] + [t.sql for t in s.transforms]
    return sorted(set(paths))


def revision(rel: PipelineRelease, root: Path) -> Revision:
    files = {MANIFEST: hashlib.sha256(rel.model_dump_json(by_alias=True).encode()).hexdigest()}
    for p in referenced_files(rel):
        try:
            files[p] = hashlib.sha256((root / p).read_bytes()).hexdigest()
        except OSError:
            files[p] = "missing"
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(p.encode() + b"\0" + files[p].encode() + b"\n")
    return Revision(rel.spec.version, "sha256:" + h.hexdigest(), files)


def changed_files(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """Paths whose content differs between two revisions' file digests (added and removed too)."""
    return sorted(p for p in set(recorded) | set(now) if recorded.get(p) != now.get(p))


def reused_versions(before: dict[str, Revision], after: dict[str, Revision]) -> list[str]:
    """Releases whose version is unchanged between two trees but whose content changed."""
    out = []
    for name in sorted(set(before) & set(after)):
        old, new = before[name], after[name]
        if old.version == new.version and old.digest != new.digest:
            files = ", ".join(changed_files(old.files, new.files))
            out.append(
                f"release {name}: version {new.version} deploys other content than before "
                f"(changed: {files}); bump spec.version, or the controller refuses it (VersionReused)"
            )
    return out
