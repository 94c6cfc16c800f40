"""Apache Iceberg tables (manifest ``format: iceberg``) for the Hive adapter: the SQL it sends
the Spark Thrift Server's catalog ``iceberg`` (an Iceberg ``SparkCatalog`` on the same Hive
metastore, set up by ``controller.devstack``), and how it reads back what Spark reports.

Pure functions (no server) but ``rollback_to_snapshot``, which is handed a Presto client; every
identifier is checked and quoted.

- An Iceberg table is registered in the metastore like any table; Spark's session catalog lists
  it with the property ``table_type=ICEBERG``, which is how observe tells it apart. Its columns,
  partition transforms and properties are then read from the ``iceberg`` catalog (``DESCRIBE
  TABLE``, ``SHOW TBLPROPERTIES``), which reports Iceberg's own types.
- The manifest's ``timestamp`` is created as Spark's ``timestamp_ntz`` (Iceberg ``timestamp``,
  without zone, like a Hive timestamp): PrestoDB 0.287's Iceberg connector cannot read Iceberg's
  ``timestamptz``, which Spark's ``timestamp`` becomes.
- Schema evolution is sent as Spark DDL on the Iceberg table: ``RENAME COLUMN``, ``ALTER COLUMN
  … TYPE`` (a promotion), ``DROP COLUMN``, ``ADD COLUMNS``. Each changes table metadata only (by
  field id); no data file is rewritten.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.adapters.hive_ddl import columns_to_add, props_sql
from controller.adapters.hive_parse import TableInfo, parse_presto_view
from controller.model import iceberg
from controller.model.identifiers import (
    check_hive_ident,
    normalize_hive_type,
    presto_string_literal,
    quote_hive,
    quote_hive_qualified,
    quote_presto,
    spark_string_literal,
    split_qualified,
)
from controller.plan.actions import Action, FieldChange, Op
from controller.plan.resources import Column, Owner, ResourceKind, TableResource, ViewResource, ViewSegment
from controller.plan.rules.hive import OWNER_PROPERTY, VERSION_PROPERTY

ICEBERG_CATALOG = iceberg.PRESTO_CATALOG
FORMAT = iceberg.FORMAT


def is_iceberg(properties: dict[str, str] | None) -> bool:
    """Whether metastore table parameters mark an Iceberg table."""
    return (properties or {}).get("table_type", "").upper() == "ICEBERG"


def iceberg_name(db: str, table: str) -> str:
    """```iceberg`.`db`.`table``` for Spark SQL."""
    return f"{quote_hive(ICEBERG_CATALOG)}.{quote_hive_qualified(db, table)}"


def spark_type(hive_type: str) -> str:
    t = normalize_hive_type(hive_type)
    return "timestamp_ntz" if t == "timestamp" else t


def manifest_type(reported: str) -> str:
    t = reported.strip().lower()
    return "timestamp" if t == "timestamp_ntz" else normalize_hive_type(t)


def create_sql(desired: TableResource) -> str:
    """``CREATE TABLE iceberg.db.t (…) USING iceberg [PARTITIONED BY (transforms)] …``."""
    db, table = split_qualified(desired.name)
    cols = ", ".join(f"{quote_hive(c.name)} {spark_type(c.type)}" for c in desired.columns)
    sql = f"CREATE TABLE {iceberg_name(db, table)} ({cols}) USING iceberg"
    if desired.partitioning:
        sql += f" PARTITIONED BY ({', '.join(_transform_sql(t) for t in desired.partitioning)})"
    if desired.location:
        sql += f" LOCATION {spark_string_literal(desired.location)}"
    if desired.properties:
        sql += f" TBLPROPERTIES ({props_sql(desired.properties)})"
    return sql


def _transform_sql(transform: str) -> str:
    """A normalized transform (``controller.model.iceberg``) with its column quoted."""
    m = re.fullmatch(r"([a-z]+)\((?:(\d+), )?([a-z_][a-z0-9_]*)\)", transform)
    if m is None:
        return quote_hive(check_hive_ident(transform, "column"))
    fn, n, col = m.groups()
    return f"{fn}({n + ', ' if n else ''}{quote_hive(check_hive_ident(col, 'column'))})"


def table_resource(
    db: str, name: str, describe: Sequence[tuple[Any, ...]], props: dict[str, str], location: str | None
) -> TableResource:
    """The observed Iceberg table from ``DESCRIBE TABLE iceberg.db.t`` rows (columns, then
    ``# Partitioning`` with ``Part N: transform`` rows) and its ``SHOW TBLPROPERTIES``."""
    columns: list[Column] = []
    partitioning: list[str] = []
    section = "columns"
    for row in describe:
        key, value = str(row[0] or "").strip(), str(row[1] or "").strip()
        if key.startswith("#"):
            section = key.lstrip("# ").lower()
            continue
        if not key:
            continue
        if section == "columns":
            columns.append(Column(name=key, type=manifest_type(value)))
        elif section == "partitioning" and key.startswith("Part "):
            partitioning.append(value)
    owner = None
    if OWNER_PROPERTY in props:
        owner = Owner(release=props[OWNER_PROPERTY], version=props.get(VERSION_PROPERTY, ""))
    return TableResource(
        name=f"{db}.{name}",
        owner=owner,
        columns=columns,
        format=FORMAT,
        partitioning=partitioning,
        properties=props,
        location=location,
    )


def update_statements(
    desired: TableResource, live: TableResource, changes: Sequence[FieldChange]
) -> list[tuple[str, str, str]]:
    """(Spark SQL, stats op, what it did) for the planned changes whose effect is not live yet:
    renames, then promotions, drops, added columns, properties."""
    db, table = split_qualified(desired.name)
    target = f"ALTER TABLE {iceberg_name(db, table)}"
    have = {c.name: c.type for c in live.columns}
    out: list[tuple[str, str, str]] = []
    for ch in changes:
        m = re.fullmatch(r"columns\.([a-z_][a-z0-9_]*)\.name", ch.field)
        if m and ch.old in have and ch.new not in have:
            old, new = check_hive_ident(str(ch.old), "column"), check_hive_ident(str(ch.new), "column")
            out.append(
                (
                    f"{target} RENAME COLUMN {quote_hive(old)} TO {quote_hive(new)}",
                    "rename_column",
                    f"renamed {old} → {new}",
                )
            )
            have[new] = have.pop(old)
    for ch in changes:
        m = re.fullmatch(r"columns\.([a-z_][a-z0-9_]*)\.type", ch.field)
        if m and m.group(1) in have and have[m.group(1)] != normalize_hive_type(str(ch.new)):
            col, new_type = m.group(1), normalize_hive_type(str(ch.new))
            out.append(
                (
                    f"{target} ALTER COLUMN {quote_hive(col)} TYPE {spark_type(new_type)}",
                    "alter_column_type",
                    f"widened {col} {have[col]} → {new_type}",
                )
            )
    for ch in changes:
        m = re.fullmatch(r"columns\.([a-z_][a-z0-9_]*)", ch.field)
        if m and ch.new is None and m.group(1) in have:
            out.append(
                (f"{target} DROP COLUMN {quote_hive(m.group(1))}", "drop_column", f"dropped {m.group(1)}")
            )
            have.pop(m.group(1))
    missing = columns_to_add(desired.name, changes, have)
    if missing:
        cols = ", ".join(f"{quote_hive(n)} {spark_type(t)}" for n, t in missing)
        out.append(
            (f"{target} ADD COLUMNS ({cols})", "add_columns", "added " + ", ".join(n for n, _ in missing))
        )
    keys = [ch.field.removeprefix("properties.") for ch in changes if ch.field.startswith("properties.")]
    want = desired.properties
    props = {k: want[k] for k in keys if k in want and live.properties.get(k) != want[k]}
    if props:
        out.append(
            (
                f"{target} SET TBLPROPERTIES ({props_sql(props)})",
                "set_tblproperties",
                "set " + ", ".join(sorted(props)),
            )
        )
    return out


def breaks_views(changes: Sequence[FieldChange]) -> bool:
    """Whether the changes rename, retype or drop a column (Presto then fails views listing it)."""
    return any(
        re.fullmatch(r"columns\.\w+\.(name|type)", c.field)
        or (c.field.startswith("columns.") and c.new is None)
        for c in changes
    )


_PRESTO_TYPES = {"int": "integer", "float": "real", "string": "varchar", "binary": "varbinary"}


def presto_type(hive_type: str) -> str:
    """The type Presto's view definition stores for a column of this (manifest) type."""
    t = manifest_type(hive_type)
    return _PRESTO_TYPES.get(t, t)


def stored_view_columns(view_text: str) -> dict[str, str] | None:
    """name → type of the columns a Presto view stored (``/* Presto View: <base64 JSON> */``)."""
    m = re.search(r"/\* Presto View: ([A-Za-z0-9+/=]+) \*/", view_text)
    try:
        cols = json.loads(base64.b64decode(m.group(1)))["columns"] if m else None
        return {str(c["name"]): str(c["type"]) for c in cols} if isinstance(cols, list) else None
    except (ValueError, KeyError, TypeError):
        return None


def view_repairs(
    extended: dict[tuple[str, str], TableInfo], db: str, table: str, columns: list[Column]
) -> list[Action]:
    """REPLACE actions for the stale all-column serving views among ``extended`` (``SHOW TABLE
    EXTENDED`` of a database) over ``db.table``: those whose stored columns (name and type) are not
    the table's current ``columns`` any more. Presto fails every query on such a view ("View … is
    stale"); created again, it lists the table's columns as they are now."""
    full, out = f"{db}.{table}", []
    now = {c.name: presto_type(c.type) for c in columns}
    for (vdb, vname), info in sorted(extended.items()):
        view = parse_presto_view(info.view_text or "") if info.type == "VIEW" else None
        if view is None or not view.all_columns:
            continue
        tables = [t for t, _ in view.segments] + (
            [s.table for s in view.split.segments] if view.split else []
        )
        stored = stored_view_columns(info.view_text or "") or {}
        if full not in tables or all(now.get(n) == t for n, t in stored.items()):
            continue
        segments = [ViewSegment(table=t, since=since) for t, since in view.segments]
        plain = len(segments) == 1 and segments[0].since is None
        desired = ViewResource(
            name=f"{vdb}.{vname}",
            target=view.segments[-1][0],
            segments=[] if plain else segments,
            time_column=view.time_column or ViewResource.model_fields["time_column"].default,
            key_split=view.split,
        )
        reason = f"{full} renamed, retyped or dropped a column"
        out.append(
            Action(op=Op.REPLACE, kind=ResourceKind.VIEW, name=desired.name, reason=reason, desired=desired)
        )
    return out


# --- snapshots (the audit's data side; read through Presto's ``iceberg`` catalog) ----------------


def metadata_table(db: str, table: str, which: str, catalog: str = ICEBERG_CATALOG) -> str:
    """``"iceberg"."db"."table$which"``: one of Presto's Iceberg metadata tables (``$snapshots``,
    ``$history``), or with ``which`` ``@<snapshot id>`` the table as of that snapshot."""
    db, table = check_hive_ident(db, "database"), check_hive_ident(table, "table")
    return f'{quote_presto(catalog)}.{quote_presto(db)}."{table}{which}"'


def snapshots_sql(names: Sequence[str], catalog: str = ICEBERG_CATALOG) -> str:
    """One Presto statement giving, for each named Iceberg table that has a snapshot, a row (name,
    current snapshot id, its commit time). The current snapshot is the one made current last in
    ``$history`` (Iceberg appends a history entry on each commit and on each rollback, so after a
    rollback it is the older snapshot, not the newest one in ``$snapshots``)."""
    return _current_snapshots(
        names,
        presto_string_literal,
        "CAST(s.snapshot_id AS varchar), CAST(s.committed_at AS varchar)",
        lambda db, table, which: metadata_table(db, table, "$" + which, catalog),
    )


def _current_snapshots(
    names: Sequence[str],
    literal: Callable[[str], str],
    columns: str,
    metadata: Callable[[str, str, str], str],
) -> str:
    """``SELECT name, <columns>`` of each table's current snapshot, UNION ALL: ``metadata(db,
    table, "snapshots" | "history")`` names a metadata table in the engine's syntax."""
    parts = []
    for name in names:
        db, table = split_qualified(name)
        parts.append(  # every name is checked and quoted, the table's as a string literal
            f"SELECT {literal(name)}, {columns} FROM {metadata(db, table, 'snapshots')} s "  # noqa: S608
            f"WHERE s.snapshot_id = (SELECT max_by(snapshot_id, made_current_at) "
            f"FROM {metadata(db, table, 'history')})"
        )
    return " UNION ALL ".join(parts)


def parse_snapshots(rows: Sequence[tuple[Any, ...]]) -> dict[str, tuple[str, str]]:
    """name → (snapshot id, commit time in ISO 8601 UTC) from ``snapshots_sql``'s rows (Presto
    spells the time ``2026-12-05 16:47:10.679 UTC``)."""
    out = {}
    for name, snapshot_id, committed in rows:
        when = str(committed).strip()
        if when.endswith(" UTC"):
            when = when[: -len(" UTC")].replace(" ", "T") + "Z"
        out[str(name)] = (str(snapshot_id), when)
    return out


def snapshots_spark_sql(names: Sequence[str]) -> str:
    """``snapshots_sql`` for the Spark Thrift Server (its ``iceberg`` catalog's ``snapshots`` and
    ``history`` metadata tables): (name, current snapshot id, commit time in epoch milliseconds,
    which no session time zone can shift). On the 2-core stack 0.1 to 0.3 s, Presto 1.7 s."""
    return _current_snapshots(
        names,
        spark_string_literal,
        "CAST(s.snapshot_id AS STRING), unix_millis(s.committed_at)",
        lambda db, table, which: f"{iceberg_name(db, table)}.{which}",
    )


def parse_spark_snapshots(rows: Sequence[tuple[Any, ...]]) -> dict[str, tuple[str, str]]:
    """``snapshots_spark_sql``'s rows in ``parse_snapshots``'s form (``2026-12-05T16:47:10.679Z``)."""
    out = {}
    for name, snapshot_id, millis in rows:
        ms = int(millis)
        when = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        out[str(name)] = (str(snapshot_id), f"{when}{ms % 1000:03d}Z")
    return out


def snapshot_log_sql(name: str, catalog: str = ICEBERG_CATALOG) -> str:
    """Every snapshot of Iceberg table ``name`` (``$snapshots``), oldest first: id, parent id,
    commit time and summary (as JSON text: the client's map decoding is not relied on)."""
    db, table = split_qualified(name)
    snaps = metadata_table(db, table, "$snapshots", catalog)
    cols = "CAST(snapshot_id AS varchar), CAST(parent_id AS varchar), CAST(committed_at AS varchar)"
    order = "ORDER BY committed_at, snapshot_id"
    # the name is checked and quoted
    return f"SELECT {cols}, json_format(CAST(summary AS json)) FROM {snaps} {order}"  # noqa: S608


def parse_snapshot_log(
    rows: Sequence[tuple[Any, ...]],
) -> list[tuple[str, str | None, str, dict[str, str]]]:
    """``snapshot_log_sql``'s rows as (id, parent id or None, commit time in ISO 8601 UTC, summary)."""
    out = []
    for snapshot_id, parent, committed, summary in rows:
        when = str(committed).strip()
        if when.endswith(" UTC"):
            when = when[: -len(" UTC")].replace(" ", "T") + "+00:00"
        parsed = json.loads(summary) if isinstance(summary, str) else dict(summary or {})
        summary_map = {str(k): str(v) for k, v in parsed.items()}
        out.append((str(snapshot_id), None if parent is None else str(parent), when, summary_map))
    return out


# --- rollback (through Presto: its CALL takes the metastore lock the stack's TxnHandler tables serve) --


class PrestoStatements(Protocol):
    """What ``rollback_to_snapshot`` needs of ``controller.adapters.presto.PrestoClient``."""

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]: ...


def rollback_sql(name: str, snapshot_id: str, catalog: str = ICEBERG_CATALOG) -> str:
    """``CALL iceberg.system.rollback_to_snapshot('db', 'table', <id>)`` (PrestoDB 0.287): makes an
    older snapshot of the table current again; Iceberg refuses one that is not an ancestor of the
    current snapshot. The id is an Iceberg snapshot id (a signed 64-bit integer) as a string."""
    db, table = split_qualified(name)
    db, table = check_hive_ident(db, "database"), check_hive_ident(table, "table")
    if not re.fullmatch(r"-?[0-9]{1,19}", snapshot_id.strip()) or not (
        -(2**63) <= int(snapshot_id) < 2**63
    ):
        raise ValueError(f"{name}: snapshot id {snapshot_id!r} is not an Iceberg snapshot id (an int64)")
    return (
        f"CALL {quote_presto(catalog)}.system.rollback_to_snapshot("
        f"{presto_string_literal(db)}, {presto_string_literal(table)}, {int(snapshot_id)})"
    )


def rollback_to_snapshot(
    presto: PrestoStatements, name: str, snapshot_id: str, catalog: str = ICEBERG_CATALOG
) -> bool:
    """Make ``snapshot_id`` the current snapshot of Iceberg table ``name`` (``db.table``) again;
    ``False`` without a rollback when it is current already (read as ``snapshots_sql`` does: the
    snapshot made current last), so a retried rollback changes nothing. Readers see the older
    snapshot's rows at once; the newer snapshots stay in the metadata (time travel) until expired."""
    sql = rollback_sql(name, snapshot_id, catalog)
    current = parse_snapshots(presto.query(snapshots_sql([name], catalog), op="iceberg_snapshots"))
    if current.get(name, ("", ""))[0] == str(int(snapshot_id)):
        return False
    presto.query(sql, op="iceberg_rollback")
    return True
