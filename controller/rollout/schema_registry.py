"""pipectl's schema registry of record: subjects, versions and ids, folded from git history.

Git is the only writer (``controller.source.schema_history`` reads what each commit declares).
``fold`` takes one commit's subjects into the registry, in history order:

- a schema gets the next id the first time its content appears anywhere (ids are global, from 1;
  the same content under two subjects, or again after a revert, keeps its id). Content is compared
  as JSON with sorted keys, so whitespace and key order do not make a new id;
- a subject gets a new version (1, 2, …) when its schema differs from its latest version's
  (a revert to an older schema is a new version carrying the old id, so "latest" is what git
  says now);
- a subject's compatibility level is the one its latest commit declares.

The fold is a pure function of the commit sequence, so a registry rebuilt from git history has the
same ids and versions as the one kept in the state store (``controller.engine.registry_sync``).
The queries below answer the Confluent Schema Registry REST API (``controller.api.schema_registry``);
they raise ``RegistryError`` with Confluent's error codes (40401 subject, 40402 version, 40403
schema not found, 42201 invalid schema, 42202 invalid version).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from controller.model.manifest import Compatibility, SchemaFormat
from controller.rollout.schema_compat import SchemaParseError, check
from controller.source.schema_history import CommitSchemas

GLOBAL_COMPATIBILITY = Compatibility.BACKWARD
"""The registry-wide level ``GET /config`` answers: the manifest's default (``SchemaSpec``)."""


class RegistryError(Exception):
    """A request the registry cannot answer: HTTP status and Confluent error code."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SchemaEntry(_Doc):
    id: int
    format: SchemaFormat
    text: str


class RegisteredVersion(_Doc):
    version: int
    id: int
    commit: str | None = None
    """The commit that registered it."""


class Subject(_Doc):
    release: str
    schema_name: str
    format: SchemaFormat
    compatibility: Compatibility
    versions: list[RegisteredVersion] = Field(default_factory=list)


class Registry(_Doc):
    head: str | None = None
    """The last commit folded in."""
    schemas: list[SchemaEntry] = Field(default_factory=list)
    """By id: ``schemas[id - 1]``."""
    subjects: dict[str, Subject] = Field(default_factory=dict)


def identity(fmt: SchemaFormat, text: str) -> str:
    """What makes two schema texts the same schema: the format and the JSON with sorted keys
    (the text stripped when it is not JSON)."""
    try:
        body = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = text.strip()
    return f"{fmt.value}:{body}"


def fold(reg: Registry, step: CommitSchemas) -> Registry:
    """``reg`` with one commit's subjects registered (a new registry; ``reg`` is not changed)."""
    out = reg.model_copy(deep=True)
    ids = {identity(e.format, e.text): e.id for e in out.schemas}
    for d in step.schemas:
        key = identity(d.format, d.text)
        sid = ids.get(key)
        if sid is None:
            sid = len(out.schemas) + 1
            out.schemas.append(SchemaEntry(id=sid, format=d.format, text=d.text))
            ids[key] = sid
        subj = out.subjects.get(d.subject)
        if subj is None:
            subj = out.subjects[d.subject] = Subject(
                release=d.release, schema_name=d.schema, format=d.format, compatibility=d.compatibility
            )
        subj.release, subj.schema_name, subj.format = d.release, d.schema, d.format
        subj.compatibility = d.compatibility
        if not subj.versions or subj.versions[-1].id != sid:
            subj.versions.append(
                RegisteredVersion(version=len(subj.versions) + 1, id=sid, commit=step.commit)
            )
    out.head = step.commit
    return out


def build(steps: Iterable[CommitSchemas], start: Registry | None = None) -> Registry:
    reg = start if start is not None else Registry()
    for step in steps:
        reg = fold(reg, step)
    return reg


# --- queries ----------------------------------------------------------------------------------


def subject(reg: Registry, name: str) -> Subject:
    found = reg.subjects.get(name)
    if found is None:
        raise RegistryError(404, 40401, f"Subject '{name}' not found.")
    return found


def schema(reg: Registry, schema_id: int) -> SchemaEntry:
    if not 1 <= schema_id <= len(reg.schemas):
        raise RegistryError(404, 40403, f"Schema {schema_id} not found")
    return reg.schemas[schema_id - 1]


def version(reg: Registry, name: str, ref: str) -> RegisteredVersion:
    """Version ``ref`` (a number, ``latest`` or ``-1``) of subject ``name``."""
    subj = subject(reg, name)
    if ref in ("latest", "-1"):
        return subj.versions[-1]
    if not ref.isdigit() or not 1 <= int(ref) <= 2**31 - 1:
        raise RegistryError(
            422,
            42202,
            f"The specified version '{ref}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"',
        )
    n = int(ref)
    if n > len(subj.versions):
        raise RegistryError(404, 40402, f"Version {n} not found.")
    return subj.versions[n - 1]


def id_versions(reg: Registry, schema_id: int) -> list[tuple[str, int]]:
    """Every (subject, version) that carries ``schema_id``, sorted."""
    schema(reg, schema_id)
    return sorted(
        (name, v.version) for name, s in reg.subjects.items() for v in s.versions if v.id == schema_id
    )


def schema_format(schema_type: str | None) -> SchemaFormat:
    """A request's ``schemaType`` (absent: AVRO, as in Confluent's API)."""
    kind = (schema_type or "AVRO").upper()
    if kind == "AVRO":
        return SchemaFormat.AVRO
    if kind == "JSON":
        return SchemaFormat.JSON
    raise RegistryError(422, 42201, f"Invalid schema: schemaType {schema_type!r} is not served (AVRO, JSON)")


def lookup(reg: Registry, name: str, fmt: SchemaFormat, text: str) -> RegisteredVersion:
    """The newest version of ``name`` whose schema is ``text`` (40403 when none is)."""
    subj = subject(reg, name)
    key = identity(fmt, text)
    for v in reversed(subj.versions):
        entry = schema(reg, v.id)
        if identity(entry.format, entry.text) == key:
            return v
    raise RegistryError(404, 40403, "Schema not found")


def incompatibilities(reg: Registry, name: str, ref: str | None, fmt: SchemaFormat, text: str) -> list[str]:
    """Why ``text`` is not compatible with subject ``name`` under its level: against version
    ``ref`` only when it is a number, against the latest (every version when the level is
    transitive) for ``latest`` or ``None``. Empty when compatible. Uses ``schema_compat.check``,
    the same check as the schemaCompatibility gate."""
    subj = subject(reg, name)
    if fmt is not subj.format:
        return [f"schemaType {fmt.value.upper()} differs from the subject's {subj.format.value.upper()}"]
    if ref is not None and ref not in ("latest", "-1"):
        against = [version(reg, name, ref)]
    else:
        against = list(reversed(subj.versions))  # newest first, as check wants them
    try:
        found = check(fmt, subj.compatibility, text, [schema(reg, v.id).text for v in against])
    except SchemaParseError as e:
        raise RegistryError(422, 42201, f"Invalid schema: {e}") from None
    return [
        f"not {i.direction} compatible with version {against[i.against].version} "
        f"({i.kind} at {i.location}): {i.message}"
        for i in found
    ]


def compatibility_level(reg: Registry, name: str | None) -> Compatibility:
    """The level of subject ``name`` (as its manifest declares it), or the global one."""
    return GLOBAL_COMPATIBILITY if name is None else subject(reg, name).compatibility
