"""The Confluent wire format on the job side: each Kafka value is decoded with its writer schema.

A value is magic byte 0, the writer schema's id (4 bytes, big-endian) and the Avro body
(``frame``/``parse_header``). ``decode_confluent`` decodes a Kafka frame's values in Spark: for
each writer id known when the job starts, ``from_avro(body, writer, {"avroSchema": reader})``
resolves the writer's record to the job's reader schema (Avro schema resolution: an added field
with a default, a removed field); a CASE over the ids picks the record's own writer. A record
that cannot be decoded is kept, with the reason in the ``decode_error`` column
(``REASONS``), so the frame (``controller.jobkit.kafka_job``) counts it and leaves it out of
the sink instead of dropping it silently.

The writer schemas are fetched from a Confluent-compatible registry when the job starts
(``fetch_writer_schemas``: every version of the subject; pipectl's registry serves them at
``/schema-registry`` of the controller's API). They are read once, at start, because the CASE is
part of the streaming query's plan; a schema committed later needs a restart of the job, which
a new release version gives. Without a registry every id is decoded with the reader schema
(``writers=None``): the header is still checked, but an unknown id cannot be told apart.

Imports only pyspark and the stdlib (it ships with the job).
"""

from __future__ import annotations

import json
import struct
import urllib.parse
import urllib.request
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro

MAGIC = 0
HEADER_BYTES = 5
DECODE_ERROR = "decode_error"
REASONS = ("magic", "unknown_id", "body")
"""Why a record is undecodable: no 5-byte header or a magic byte other than 0; a schema id the
job was not given; a body its writer schema cannot decode (or a decoded record missing a field)."""
TOKEN_ENV = "PIPECTL_SCHEMA_REGISTRY_TOKEN"  # noqa: S105 (the variable's name, not a secret)


class WireError(ValueError):
    """A value that is not in the Confluent wire format; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def frame(schema_id: int, body: bytes) -> bytes:
    """The wire format of an Avro body written with schema ``schema_id``."""
    if not 0 <= schema_id < 2**31:
        raise ValueError(f"schema id {schema_id} is out of range")
    return struct.pack(">bI", MAGIC, schema_id) + body


def parse_header(value: bytes | None) -> tuple[int, bytes]:
    """``(schema id, Avro body)`` of a wire-format value; ``WireError`` if it is not one."""
    if value is None or len(value) < HEADER_BYTES:
        n = 0 if value is None else len(value)
        raise WireError("magic", f"{n} bytes: shorter than the 5-byte header")
    if value[0] != MAGIC:
        raise WireError("magic", f"magic byte {value[0]}, expected {MAGIC}")
    (schema_id,) = struct.unpack(">I", value[1:HEADER_BYTES])
    return schema_id, value[HEADER_BYTES:]


def _get(url: str, token: str | None, timeout: float) -> object:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"schema registry URL {url!r}: expected http:// or https://")
    headers = {"Accept": "application/vnd.schemaregistry.v1+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
        return json.loads(r.read())


def fetch_writer_schemas(
    url: str, subject: str, token: str | None = None, timeout: float = 10.0
) -> dict[int, str]:
    """Every version of ``subject`` in the registry at ``url``: schema id -> schema text."""
    base = f"{url.rstrip('/')}/subjects/{urllib.parse.quote(subject, safe='')}/versions"
    versions = _get(base, token, timeout)
    if not isinstance(versions, list) or not versions:
        raise ValueError(f"{subject}: the registry at {url} answered no versions: {versions!r}")
    out: dict[int, str] = {}
    for v in versions:
        doc = _get(f"{base}/{int(v)}", token, timeout)
        if not isinstance(doc, dict) or doc.get("schemaType", "AVRO") != "AVRO":
            raise ValueError(f"{subject} version {v}: not an Avro schema: {doc!r}")
        out[int(doc["id"])] = str(doc["schema"])
    return out


def decode_confluent(
    raw: DataFrame, reader_schema: str, writers: Mapping[int, str] | None, column: str = "value"
) -> DataFrame:
    """``raw`` plus ``event`` (the value decoded to the reader schema's struct, null when undecodable)
    and ``decode_error`` (null, or one of ``REASONS``)."""
    value = F.col(column)
    # coalesce: a null value (a tombstone) has no header either
    header = (F.length(value) >= HEADER_BYTES) & (F.hex(F.substring(value, 1, 1)) == F.lit("00"))
    framed = F.coalesce(header, F.lit(False))
    schema_id = F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast("long")
    body = F.expr(f"substring(`{column}`, {HEADER_BYTES + 1})")
    if writers:
        decoded: Column = F.lit(None)
        for sid, writer in sorted(writers.items()):
            options = {"avroSchema": reader_schema, "mode": "PERMISSIVE"}
            decoded = F.when(schema_id == F.lit(sid), from_avro(body, writer, options)).otherwise(decoded)
        known = F.coalesce(schema_id.isin([int(k) for k in writers]), F.lit(False))
    else:
        decoded = from_avro(body, reader_schema, {"mode": "PERMISSIVE"})
        known = F.lit(True)
    event = F.when(framed & known, decoded)
    error = (
        F.when(~framed, F.lit("magic"))
        .when(~known, F.lit("unknown_id"))
        .when(event.isNull(), F.lit("body"))
    )
    return raw.withColumn("event", event).withColumn(DECODE_ERROR, error)
