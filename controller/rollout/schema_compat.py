"""Schema compatibility of a new schema version against the live ones (Avro and JSON Schema).

Modes, as in Confluent Schema Registry:

- ``BACKWARD``: the new schema, as a reader, reads data written with the previous one;
- ``FORWARD``: the previous schema, as a reader, reads data written with the new one;
- ``FULL``: both; ``*_TRANSITIVE``: the same against every earlier known-good version, not only
  the newest; ``NONE``: not checked.

Avro goes through ``avro.compatibility.ReaderWriterCompatibilityChecker`` (the Avro project's own
resolution rules: reader fields without a default that the writer lacks, type mismatches outside
the promotions int→long→float→double and string↔bytes, missing enum symbols or union branches).

JSON Schema has no such reference implementation; ``json_incompatibilities`` is a deliberately
small structural check of a reader schema against a writer schema: a property the reader requires
must be required by the writer; a property both declare must keep a type the reader accepts
(``integer`` is accepted where ``number`` is); a reader ``enum`` must contain the writer's values;
a reader with ``additionalProperties: false`` must declare every property the writer declares;
nested ``properties`` and array ``items`` are checked the same way. Anything else (``oneOf``,
``$ref``, formats, patterns) is not judged. For BACKWARD this means: no new required property and
no type change of an existing one.

Hive column changes are not judged here: the plan rule ``controller.plan.rules.hive.diff_table``
classifies them (appended column → update; drop, rename, reorder, retype → refused with a named
reason unless a migration is declared) before any gate runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.errors import AvroException

from controller.model.manifest import Compatibility, SchemaFormat

Ordering = Literal["consumers-first", "producers-first", "any"]


def ordering(compatibility: Compatibility) -> Ordering:
    """Which side of a topic must roll out first for a schema change under ``compatibility``.

    - BACKWARD(_TRANSITIVE) → ``consumers-first``: only the *new* schema is guaranteed to read
      data of both versions (old consumers may fail on new records), so every consumer is
      upgraded before any producer starts writing the new version.
    - FORWARD(_TRANSITIVE) → ``producers-first``: *old* readers are guaranteed to read new data
      (new readers may fail on old records still in the topic), so producers switch first and
      consumers follow once old records have aged out or been consumed.
    - FULL(_TRANSITIVE) → ``any``: both directions are guaranteed.
    - NONE → ``any``: nothing is guaranteed, so no order makes the change safe; pipectl does not
      check such schemas and the change needs a new topic (or a coordinated stop) instead.
    """
    if compatibility in (Compatibility.BACKWARD, Compatibility.BACKWARD_TRANSITIVE):
        return "consumers-first"
    if compatibility in (Compatibility.FORWARD, Compatibility.FORWARD_TRANSITIVE):
        return "producers-first"
    return "any"


def directions(compatibility: Compatibility) -> tuple[bool, bool, bool]:
    """(backward, forward, transitive) checks a mode asks for."""
    backward = compatibility.value.startswith(("BACKWARD", "FULL"))
    forward = compatibility.value.startswith(("FORWARD", "FULL"))
    return backward, forward, compatibility.value.endswith("_TRANSITIVE")


def fingerprint(text: str) -> str:
    """A short, stable id of a schema text for evidence (sha256 of the text)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader schema cannot read a writer schema's data."""

    against: int
    """Index of the earlier version in the live list (0 = newest)."""
    direction: Literal["backward", "forward"]
    """backward: new reads old; forward: old reads new."""
    kind: str
    location: str
    message: str

    def as_evidence(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "direction": self.direction,
            "kind": self.kind,
            "location": self.location,
            "message": self.message,
        }


class SchemaParseError(ValueError):
    """A schema text that does not parse as its declared format."""


def check(
    fmt: SchemaFormat, compatibility: Compatibility, new: str, previous: Sequence[str]
) -> list[Incompatibility]:
    """Every incompatibility of ``new`` against ``previous`` (newest first) under ``compatibility``.

    Only the newest earlier version is checked unless the mode is transitive. Raises
    ``SchemaParseError`` when a text does not parse.
    """
    if compatibility is Compatibility.NONE or not previous:
        return []
    backward, forward, transitive = directions(compatibility)
    olds = list(previous if transitive else previous[:1])
    if fmt is SchemaFormat.AVRO:
        return _pairs(
            _parse_avro(new, "new version"),
            [_parse_avro(t, f"earlier version #{i}") for i, t in enumerate(olds)],
            backward,
            forward,
            _avro_incompatibilities,
        )
    return _pairs(
        _parse_json(new, "new version"),
        [_parse_json(t, f"earlier version #{i}") for i, t in enumerate(olds)],
        backward,
        forward,
        json_incompatibilities,
    )


S = TypeVar("S")


def _pairs(
    new: S,
    olds: list[S],
    backward: bool,
    forward: bool,
    reasons: Callable[[S, S], list[tuple[str, str, str]]],
) -> list[Incompatibility]:
    out: list[Incompatibility] = []
    for i, old in enumerate(olds):
        if backward:
            out += [Incompatibility(i, "backward", *r) for r in reasons(new, old)]
        if forward:
            out += [Incompatibility(i, "forward", *r) for r in reasons(old, new)]
    return out


# --- Avro -----------------------------------------------------------------------------------


def _parse_avro(text: str, what: str) -> avro.schema.Schema:
    try:
        return avro.schema.parse(text)
    except (AvroException, ValueError) as e:
        raise SchemaParseError(f"{what}: not a valid Avro schema: {e}") from None


def _avro_incompatibilities(
    reader: avro.schema.Schema, writer: avro.schema.Schema
) -> list[tuple[str, str, str]]:
    """(kind, location, message) for each reason ``reader`` cannot read ``writer``'s data."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ",".join(sorted({i.value for i in result.incompatibilities})) or "incompatible"
    locations = "; ".join(sorted(result.locations)) or "/"
    messages = sorted(result.messages)
    if kinds == "reader_field_missing_default_value":
        text = f"reader field(s) {', '.join(messages)} have no default and the writer does not write them"
    else:
        text = "; ".join(messages) or "incompatible"
    return [(kinds, locations, text)]


# --- JSON Schema ----------------------------------------------------------------------------


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise SchemaParseError(f"{what}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise SchemaParseError(f"{what}: a JSON Schema must be an object")
    return doc


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else {str(x) for x in t}


def json_incompatibilities(
    reader: dict[str, Any], writer: dict[str, Any], path: str = "/"
) -> list[tuple[str, str, str]]:
    """(kind, location, message) for each reason ``reader`` may reject data valid under ``writer``."""
    out: list[tuple[str, str, str]] = []
    r_types, w_types = _types(reader), _types(writer)
    if r_types is not None and w_types is not None:
        accepted = set(r_types) | ({"integer"} if "number" in r_types else set())
        lost = w_types - accepted
        if lost:
            out.append(
                (
                    "type_mismatch",
                    path,
                    f"reader type {sorted(r_types)} does not accept writer type {sorted(lost)}",
                )
            )
            return out
    if "enum" in reader and "enum" in writer:
        missing = [v for v in writer["enum"] if v not in reader["enum"]]
        if missing:
            out.append(("missing_enum_symbols", path, f"reader enum lacks {missing}"))
    r_props: dict[str, Any] = reader.get("properties") or {}
    w_props: dict[str, Any] = writer.get("properties") or {}
    r_req = set(reader.get("required") or [])
    w_req = set(writer.get("required") or [])
    for name in sorted(r_req - w_req):
        out.append(
            (
                "reader_field_missing_default_value",
                f"{path}{name}",
                f"property {name!r} is required by the reader but not by the writer",
            )
        )
    if reader.get("additionalProperties") is False:
        for name in sorted(set(w_props) - set(r_props)):
            out.append(
                (
                    "additional_property",
                    f"{path}{name}",
                    f"property {name!r} of the writer is not allowed by the reader",
                )
            )
    for name in sorted(set(r_props) & set(w_props)):
        r_sub, w_sub = r_props[name], w_props[name]
        if isinstance(r_sub, dict) and isinstance(w_sub, dict):
            out += json_incompatibilities(r_sub, w_sub, f"{path}{name}/")
    r_items, w_items = reader.get("items"), writer.get("items")
    if isinstance(r_items, dict) and isinstance(w_items, dict):
        out += json_incompatibilities(r_items, w_items, f"{path}items/")
    return out
