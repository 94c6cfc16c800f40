"""The files pipectl deploys for a DAG: the DAG's own ``.py`` and its ``.pipectl.json`` sidecar
(tags such as ``release:``, ``version:`` and ``source:``), written into a DAG folder the scheduler
reads, plus the small tag and dag-id-pattern helpers the Airflow adapter uses. No Airflow SDK here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path, PurePath
from typing import Any, Protocol

from controller.model.errors import PermanentBackendError
from controller.plan.desired import digest
from controller.plan.resources import DagResource, Owner

BACKEND = "airflow"
META_SUFFIX = ".pipectl.json"
PIPECTL_TAG = "pipectl"


class DagDeployer(Protocol):
    """Where DAG files go. The local stack uses a folder; a cluster would use a bucket or git-sync."""

    def deploy(self, file_name: str, source: str) -> None:
        """Write ``file_name`` with ``source`` atomically (readers see the old or the new file)."""
        ...

    def remove(self, file_name: str) -> None:
        """Remove ``file_name``; absent is fine."""
        ...

    def read_digest(self, file_name: str) -> str | None:
        """``sha256:<hex>`` of the deployed file (as ``controller.plan.desired.digest``), None if absent."""
        ...

    def read_text(self, file_name: str) -> str | None:
        """The deployed file's text, None if absent."""
        ...

    def list_files(self, suffix: str) -> list[str]:
        """The names of the deployed files that end in ``suffix``."""
        ...


class LocalFolderDeployer:
    """Deploys into a DAG folder on this machine: temp file in the same folder, then rename."""

    def __init__(self, folder: Path, meta: dict[str, Any] | None = None):
        self.folder = Path(folder)
        # Facts about where the DAG runs (e.g. how to call pipectl), written into every sidecar.
        self.meta = dict(meta or {})

    def _path(self, file_name: str) -> Path:
        if not file_name or file_name != PurePath(file_name).name or file_name.startswith("."):
            raise PermanentBackendError(BACKEND, f"invalid DAG file name {file_name!r} (a plain file name)")
        return self.folder / file_name

    def deploy(self, file_name: str, source: str) -> None:
        target = self._path(file_name)
        self.folder.mkdir(parents=True, exist_ok=True)
        # The temp name neither ends in .py nor is visible to the DAG processor's file listing.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".pipectl-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(source.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def remove(self, file_name: str) -> None:
        self._path(file_name).unlink(missing_ok=True)

    def read_digest(self, file_name: str) -> str | None:
        try:
            return digest(self._path(file_name).read_bytes())
        except FileNotFoundError:
            return None

    def read_text(self, file_name: str) -> str | None:
        try:
            return self._path(file_name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def list_files(self, suffix: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.folder) if e.name.endswith(suffix))
        except FileNotFoundError:
            return []


# --- conventions (pure) ------------------------------------------------------------------------


def meta_file_name(file_name: str) -> str:
    """``x__dev.py`` → ``x__dev.pipectl.json`` (what ``Path(__file__).with_suffix(...)`` gives)."""
    return str(PurePath(file_name).with_suffix(META_SUFFIX))


def dag_tags(release: str | None, version: str, source_digest: str | None = None) -> list[str]:
    """The tags a deployed DAG carries; ``source:<12 hex>`` names the code revision, so a parse of
    the new file (not a late one of the old) is what tells the adapter a deploy was picked up."""
    tags = [PIPECTL_TAG]
    if release:
        tags.append(f"release:{release}")
    tags.append(f"version:{version}")
    if source_digest:
        tags.append(f"source:{source_tag(source_digest)}")
    return tags


def source_tag(source_digest: str) -> str:
    return source_digest.partition(":")[2][:12] or source_digest[:12]


def render_meta(dag: DagResource, extra: dict[str, Any] | None = None) -> str:
    """The sidecar's content; deterministic, so its digest tells whether it must be rewritten.

    ``schedule`` is there only when the manifest sets ``dags[].schedule`` (null: triggered runs
    only). ``extra`` carries the deployer's facts about the runtime (``pipectl``: the interpreter and
    repo a task uses to call ``pipectl transform run``); pipectl's own keys win on a clash.
    """
    release = dag.owner.release if dag.owner else None
    tags = dag_tags(release, dag.version, dag.source_digest or None)
    body = {**(extra or {}), "dag_id": dag.name, "release": release, "version": dag.version, "tags": tags}
    if dag.schedule_managed:
        body["schedule"] = dag.schedule  # the DAG file passes PIPECTL.get("schedule") to DAG(...)
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def unparsed_dags(
    deployer: DagDeployer, reported: Collection[str], names: Iterable[str] | None = None
) -> dict[str, DagResource]:
    """DAGs whose files are deployed but which Airflow does not report (yet): ``names`` not in
    ``reported``, or, without ``names``, every sidecar in the folder. Each is live with
    ``reported=False`` and the owner its sidecar names, so a release deploying the same dag_id is
    refused (NotOwned) instead of overwriting a file another release deployed a moment ago (Airflow
    parses a new file only at its next folder scan). Files without a readable sidecar are skipped."""
    if names is None:
        stems = [f[: -len(META_SUFFIX)] for f in deployer.list_files(META_SUFFIX)]
    else:
        stems = list(names)
    out: dict[str, DagResource] = {}
    for dag_id in stems:
        if dag_id in reported:
            continue
        file_name = f"{dag_id}.py"
        text = deployer.read_text(meta_file_name(file_name))
        source_digest = deployer.read_digest(file_name) if text is not None else None
        if text is None or source_digest is None:
            continue
        try:
            meta = json.loads(text)
        except ValueError:
            continue
        release = meta.get("release") if isinstance(meta, dict) else None
        if not isinstance(release, str) or not release:
            continue
        version = str(meta.get("version") or "")
        out[dag_id] = DagResource(
            name=dag_id, owner=Owner(release=release, version=version), file_name=file_name,
            source_digest=source_digest, version=version, reported=False,
        )
    return out


def tag_value(tags: Sequence[str], key: str) -> str | None:
    prefix = f"{key}:"
    return next((t[len(prefix) :] for t in tags if t.startswith(prefix)), None)


def id_pattern(names: Sequence[str]) -> str | None:
    """A substring every name contains, for ``get_dags(dag_id_pattern=...)`` (SQL ``ILIKE %p%``).

    Stage-scoped ids share their ``__<stage>`` suffix; otherwise try a common prefix; else None.
    """
    if not names:
        return None
    if len(names) == 1:
        return names[0]
    suffix = _common_prefix([n[::-1] for n in names])[::-1]
    best = max(suffix, _common_prefix(names), key=len)
    return best if len(best) >= 3 else None


def _common_prefix(names: Sequence[str]) -> str:
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


# --- the adapter -------------------------------------------------------------------------------
