r"""Identifier grammars and quoting for names that come from manifests.

Every name a manifest gives (topics, Hive databases/tables/columns, DAG ids, Spark conf keys)
is checked against a strict grammar here before it may reach SQL, a CLI argv or a file path.
Quoting helpers are the only way identifiers are put into SQL text.

Every grammar is anchored with ``\A`` … ``\Z`` and checked with ``fullmatch``: ``$`` would also
match before a trailing newline, so ``"events\n"`` would pass as a topic name. Property tests:
``tests/unit/model/test_identifiers_props.py``.
"""

from __future__ import annotations

import re
import unicodedata

TOPIC_RE = re.compile(r"\A[A-Za-z0-9._-]{1,249}\Z")
HIVE_IDENT_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,127}\Z")
DAG_ID_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,250}\Z")
SPARK_CONF_KEY_RE = re.compile(r"\Aspark\.[A-Za-z0-9_.-]+\Z")
KAFKA_CONFIG_KEY_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]*\Z")
RESOURCE_NAME_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
METASTORE_URI_RE = re.compile(r"\Athrift://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})\Z")
SEMVER_RE = re.compile(
    r"\A(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)

_PRIMITIVE_TYPES = {
    "string",
    "int",
    "integer",
    "bigint",
    "smallint",
    "tinyint",
    "double",
    "float",
    "boolean",
    "timestamp",
    "date",
    "binary",
}


class IdentifierError(ValueError):
    """A name does not match the grammar for its kind."""


def parse_metastore_uri(uri: str) -> tuple[str, int]:
    """``thrift://host:port`` (a Hive metastore) → (host, port); IdentifierError for anything else."""
    m = METASTORE_URI_RE.fullmatch(uri)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise IdentifierError(f"invalid metastoreUri {uri!r}: expected thrift://host:port")
    return m.group(1).strip("[]"), int(m.group(2))


def check_topic(name: str) -> str:
    if not TOPIC_RE.fullmatch(name) or name in {".", ".."}:
        raise IdentifierError(
            f"invalid topic name {name!r}: allowed characters are [A-Za-z0-9._-], 1-249 long"
        )
    return name


def check_hive_ident(name: str, what: str = "identifier") -> str:
    if not HIVE_IDENT_RE.fullmatch(name):
        raise IdentifierError(f"invalid Hive {what} {name!r}: must match [a-z_][a-z0-9_]*")
    return name


def split_qualified(name: str) -> tuple[str, str]:
    """Split ``db.table`` into its checked parts."""
    parts = name.split(".")
    if len(parts) != 2:
        raise IdentifierError(f"invalid Hive table name {name!r}: expected <database>.<table>")
    return check_hive_ident(parts[0], "database"), check_hive_ident(parts[1], "table")


def check_dag_id(name: str) -> str:
    if not DAG_ID_RE.fullmatch(name):
        raise IdentifierError(f"invalid DAG id {name!r}: allowed characters are [A-Za-z0-9_.-]")
    return name


def check_spark_conf_key(key: str) -> str:
    if not SPARK_CONF_KEY_RE.fullmatch(key):
        raise IdentifierError(f"invalid Spark conf key {key!r}: must match spark.[A-Za-z0-9_.-]+")
    return key


def check_kafka_config_key(key: str) -> str:
    if not KAFKA_CONFIG_KEY_RE.fullmatch(key):
        raise IdentifierError(f"invalid Kafka config key {key!r}")
    return key


def check_resource_name(name: str) -> str:
    if not RESOURCE_NAME_RE.fullmatch(name):
        raise IdentifierError(
            f"invalid name {name!r}: lower-case letters, digits and '-', "
            "starting and ending alphanumeric, max 63"
        )
    return name


def check_semver(version: str) -> str:
    if not SEMVER_RE.fullmatch(version):
        raise IdentifierError(f"invalid version {version!r}: expected semantic version MAJOR.MINOR.PATCH")
    return version


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for semantic versions (a release without pre-release sorts after its pre-releases)."""
    m = SEMVER_RE.fullmatch(version)
    if not m:
        raise IdentifierError(f"invalid version {version!r}")
    pre = m.group(4) or ""
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre


# --- Hive types -----------------------------------------------------------------------------

# ASCII only: with re.IGNORECASE alone, [a-z] also matches "\u212a" (Kelvin sign) and \d matches any
# Unicode digit, which would carry non-ASCII characters into a normalized type.
_TYPE_TOKEN = re.compile(r"[ \t\r\n]*([a-z_][a-z0-9_]*|<|>|,|:|\(|\)|[0-9]+)", re.IGNORECASE | re.ASCII)


def normalize_hive_type(text: str) -> str:
    """Parse a Hive column type and return its canonical lower-case spelling.

    Accepts primitives, decimal(p,s), varchar(n), char(n), array<T>, map<K,V>, struct<a:T,...>.
    Raises IdentifierError for anything else, so a type string never carries SQL.
    """
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TYPE_TOKEN.match(text, pos)
        if not m:
            raise IdentifierError(f"invalid column type {text!r}")
        tokens.append(m.group(1).lower())
        pos = m.end()
    out, rest = _parse_type(tokens, text)
    if rest:
        raise IdentifierError(f"invalid column type {text!r}")
    return out


def _expect(tokens: list[str], tok: str, text: str) -> list[str]:
    if not tokens or tokens[0] != tok:
        raise IdentifierError(f"invalid column type {text!r}")
    return tokens[1:]


def _parse_type(tokens: list[str], text: str) -> tuple[str, list[str]]:
    if not tokens:
        raise IdentifierError(f"invalid column type {text!r}")
    head, rest = tokens[0], tokens[1:]
    if head == "integer":
        head = "int"
    if head in _PRIMITIVE_TYPES:
        return head, rest
    if head in {"decimal", "varchar", "char"}:
        if head == "decimal" and (not rest or rest[0] != "("):
            return "decimal(10,0)", rest
        rest = _expect(rest, "(", text)
        if not rest or not rest[0].isdigit():
            raise IdentifierError(f"invalid column type {text!r}")
        args = [rest[0]]
        rest = rest[1:]
        if head == "decimal" and rest and rest[0] == ",":
            if len(rest) < 2 or not rest[1].isdigit():
                raise IdentifierError(f"invalid column type {text!r}")
            args.append(rest[1])
            rest = rest[2:]
        elif head == "decimal":
            args.append("0")
        rest = _expect(rest, ")", text)
        return f"{head}({','.join(args)})", rest
    if head == "array":
        rest = _expect(rest, "<", text)
        inner, rest = _parse_type(rest, text)
        rest = _expect(rest, ">", text)
        return f"array<{inner}>", rest
    if head == "map":
        rest = _expect(rest, "<", text)
        k, rest = _parse_type(rest, text)
        rest = _expect(rest, ",", text)
        v, rest = _parse_type(rest, text)
        rest = _expect(rest, ">", text)
        return f"map<{k},{v}>", rest
    if head == "struct":
        rest = _expect(rest, "<", text)
        fields: list[str] = []
        while True:
            if not rest or not HIVE_IDENT_RE.fullmatch(rest[0]):
                raise IdentifierError(f"invalid column type {text!r}")
            fname = rest[0]
            rest = _expect(rest[1:], ":", text)
            ftype, rest = _parse_type(rest, text)
            fields.append(f"{fname}:{ftype}")
            if rest and rest[0] == ",":
                rest = rest[1:]
                continue
            break
        rest = _expect(rest, ">", text)
        return f"struct<{','.join(fields)}>", rest
    raise IdentifierError(f"invalid column type {text!r}")


# --- quoting --------------------------------------------------------------------------------


def quote_hive(name: str) -> str:
    """Backtick-quote one checked Hive identifier (Spark SQL / HiveQL)."""
    check_hive_ident(name)
    return f"`{name}`"


def quote_hive_qualified(db: str, table: str) -> str:
    return f"{quote_hive(db)}.{quote_hive(table)}"


def quote_presto(name: str) -> str:
    """Double-quote one checked identifier (Presto / ANSI SQL)."""
    check_hive_ident(name)
    return f'"{name}"'


def _check_literal(value: str) -> str:
    """Refuse control characters (Unicode category Cc: C0, DEL, C1) in a string literal."""
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise IdentifierError("string literal contains control characters")
    return value


def spark_string_literal(value: str) -> str:
    """A single-quoted Spark SQL / HiveQL string literal (backslash escapes; '' would concatenate)."""
    _check_literal(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def presto_string_literal(value: str) -> str:
    """A single-quoted ANSI/Presto string literal (quote doubling; backslash is literal there)."""
    _check_literal(value)
    return "'" + value.replace("'", "''") + "'"
