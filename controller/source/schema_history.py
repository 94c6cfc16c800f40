"""The schemas a manifest repository declares, per commit: the input of pipectl's schema registry.

Git is the registry's only writer. A schema is registered under a subject by being referenced
from a topic of a ``PipelineRelease``: ``spec.topics[].valueSchema`` gives the subject
``<topic>-value`` and ``keySchema`` gives ``<topic>-key`` (Confluent's TopicNameStrategy over the
manifest's topic name, without a stage's topic prefix). ``declared`` reads one tree (a snapshot);
``history`` reads every commit of the branch's first-parent line, oldest first, straight from git
objects (no checkout), so the registry can be rebuilt from git alone when the state store is lost
(``controller.rollout.schema_registry`` folds the result into versions and ids).

A manifest that does not parse at a commit contributes nothing at that commit; a schema file that
is missing or not UTF-8 is left out the same way (validation reports both at their commit).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from controller.model.manifest import Compatibility, PipelineRelease, SchemaFormat
from controller.source.loader import load_documents
from controller.source.validate import RepoSnapshot, parse_object


@dataclass(frozen=True)
class DeclaredSchema:
    """One subject's schema as a tree declares it."""

    subject: str
    release: str
    schema: str
    """The schema's name in the release (``spec.schemas[].name``)."""
    format: SchemaFormat
    compatibility: Compatibility
    text: str


@dataclass(frozen=True)
class CommitSchemas:
    """Every subject's schema at one commit (``commit`` None: a plain directory)."""

    commit: str | None
    schemas: tuple[DeclaredSchema, ...]


class GitHistory(Protocol):
    """What ``history`` reads from git (``controller.source.git.GitSource``)."""

    def first_parent(self, head: str, since: str | None = None) -> list[str]: ...

    def files_at(self, commit: str, under: str) -> list[str]: ...

    def read_at(self, commit: str, path: str) -> bytes | None: ...


def declared(releases: Iterable[PipelineRelease], read: Callable[[str], str | None]) -> list[DeclaredSchema]:
    """The subjects of ``releases``, sorted by subject; ``read(path)`` gives a schema file's text
    (None when it is missing). When two releases name the same topic, the first by name wins."""
    out: dict[str, DeclaredSchema] = {}
    for rel in sorted(releases, key=lambda r: r.name):
        by_name = {s.name: s for s in rel.spec.schemas}
        for topic in rel.spec.topics:
            for role, ref in (("key", topic.key_schema), ("value", topic.value_schema)):
                spec = by_name.get(ref) if ref is not None else None
                subject = f"{topic.name}-{role}"
                if spec is None or subject in out:
                    continue
                text = read(spec.path)
                if text is None:
                    continue
                out[subject] = DeclaredSchema(
                    subject, rel.name, spec.name, spec.format, spec.compatibility, text
                )
    return [out[k] for k in sorted(out)]


def in_snapshot(snap: RepoSnapshot) -> CommitSchemas:
    """The subjects of one loaded tree (its valid releases)."""

    def read(path: str) -> str | None:
        try:
            return snap.read_text(path)
        except (OSError, UnicodeDecodeError):
            return None

    releases = [snap.release(n) for n in snap.releases]
    return CommitSchemas(snap.commit, tuple(declared(releases, read)))


def at_commit(git: GitHistory, commit: str, subdir: str = "") -> CommitSchemas:
    """The subjects declared by the manifests under ``subdir``/releases at ``commit``."""
    prefix = f"{subdir.strip('/')}/" if subdir.strip("/") else ""

    def text_of(path: str) -> str | None:
        data = git.read_at(commit, path)
        try:
            return data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            return None

    releases: list[PipelineRelease] = []
    for path in git.files_at(commit, prefix + "releases"):
        hidden = any(part.startswith(".") for part in path.split("/"))
        if hidden or not path.endswith((".yaml", ".yml")):
            continue
        text = text_of(path)
        if text is None:
            continue
        docs, _ = load_documents(text, path)
        for doc in docs:
            obj, _ = parse_object(doc)
            if isinstance(obj, PipelineRelease):
                releases.append(obj)

    def read(path: str) -> str | None:
        full = posixpath.normpath(prefix + path)
        return None if full.startswith("..") or full.startswith("/") else text_of(full)

    return CommitSchemas(commit, tuple(declared(releases, read)))


def history(git: GitHistory, head: str, since: str | None = None, subdir: str = "") -> list[CommitSchemas]:
    """``at_commit`` for every commit of ``head``'s first-parent line after ``since``, oldest first."""
    return [at_commit(git, c, subdir) for c in git.first_parent(head, since)]
