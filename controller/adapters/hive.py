"""Hive adapter: databases and tables through the Spark Thrift Server (HiveServer2 protocol, pyhive),
serving views through PrestoDB (``controller.adapters.presto``).

Which engine does what, as verified on the local stack (Spark 3.5.9 Thrift Server, Hive metastore
2.3.9, PrestoDB 0.287 on the same metastore):

- Tables are created by Spark with Hive DDL (``CREATE TABLE … STORED AS PARQUET``): a Hive-format
  table both engines read. A Spark datasource table (``USING …``) is observed with format
  ``spark:<provider>``, which the rule refuses as a format change: Spark stores it Hive-compatibly
  only when it can (a simple ``USING parquet`` table was readable by Presto; others are not).
- On a Hive-format table Spark 3.5 can only ``ADD COLUMNS``, change comments and ``SET
  TBLPROPERTIES``. A declared drop or rename migration is sent to Presto (``ALTER TABLE … DROP
  COLUMN`` / ``RENAME COLUMN``), whose Hive connector refuses both unless its catalog sets
  ``hive.allow-drop-column`` / ``hive.allow-rename-column`` (the local stack does not): that
  surfaces as a PermanentBackendError and nothing changes. Type changes and reorders have no
  route at all (the rule refuses them).
- Serving views are created by Presto: Presto cannot read (nor replace) a view Spark created
  ("Hive views are not supported"), and Spark cannot read a Presto view ([INVALID_VIEW_TEXT]).
  ``CREATE OR REPLACE VIEW`` is one metastore alter, so a concurrent Presto reader sees the old or
  the new view, never none. A view never selects ``*``: Presto fails every query on a ``SELECT *``
  view ("View … is stale") once its table gains a column. A view declared with all columns is
  created with the table's columns listed and the table alias ``pipectl_all``; observe reports it
  as ``columns: []`` while that list matches the table, else as the listed columns, so the rule
  replaces it with the new list.
- Views are observed through Spark, which lists Presto views with their encoded definition (the
  ``/* Presto View: <base64 JSON> */`` text): Presto's ``information_schema.views`` fails for the
  whole schema as soon as it holds one Spark view.

Round trips per observe pass (each counted in ``stats``; ``connect`` once per connection):

- databases: 1 (``SHOW DATABASES LIKE 'a|b'``);
- tables: 1 ``GetColumns`` (exact Hive types of every requested table in every database) + 1
  ``SHOW TABLE EXTENDED IN db LIKE 't1|t2'`` per database holding one of them (format, location,
  partition columns, properties). ``SHOW TABLE EXTENDED`` alone would not do: its schema turns
  char/varchar into ``string``. Its property list ``[k=v, …]`` is parsed knowing Spark sorts it by
  key; when a piece does not read as the next key, that table's properties are read exactly with
  ``SHOW TBLPROPERTIES`` (1 more call). A value containing ``", k=v"`` with ``k`` sorting between
  its neighbours is misread (the apply re-check reads exactly and changes nothing);
- views: 1 ``SHOW TABLE EXTENDED`` per database + 1 ``GetColumns`` for the targets of all-column
  views;
- ``observe_kinds`` (the reconciler's pass over a release): databases, tables and views together in
  1 ``SHOW DATABASES`` + 1 ``GetColumns`` + 1 ``SHOW TABLE EXTENDED`` per database, when the views'
  tables are among the tables asked for.

Idempotence: ``apply`` re-reads the resource first and only issues the statements whose effect is
missing; an action whose effect is present makes no changing call and returns ``changed=False``.
A transient failure (connection lost, metastore unavailable) retries the whole ``apply``, which
re-reads before acting again.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
import structlog
from pyhive import exc as pyhive_exc
from pyhive import hive
from sqlglot import exp
from TCLIService import ttypes
from thrift.Thrift import TException
from thrift.transport import TSocket, TTransport

from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.presto import PrestoClient
from controller.model.errors import BackendError, PermanentBackendError, TransientBackendError
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
from controller.plan.actions import Action, DiffContext, FieldChange, Op
from controller.plan.resources import (
    Column,
    DatabaseResource,
    Owner,
    Resource,
    ResourceKind,
    TableResource,
    ViewResource,
    ViewSegment,
)
from controller.plan.rules.hive import OWNER_PROPERTY, VERSION_PROPERTY, diff_view, view_segments

log = structlog.get_logger(__name__)

BACKEND = "hive"
ALL_COLUMNS_ALIAS = "pipectl_all"
UNRECOGNISED_VIEW = "(unrecognised view definition)"
SPARK_VIEW = "(a Spark view, unreadable by Presto)"

_STORED_AS = {"parquet": "PARQUET", "orc": "ORC", "avro": "AVRO", "textfile": "TEXTFILE"}
_SERDE_FORMATS = (
    ("parquet", "parquet"),
    ("orc", "orc"),
    ("avro", "avro"),
    ("jsonserde", "json"),
    ("opencsvserde", "csv"),
    ("lazysimpleserde", "textfile"),
)
# Errors in a statement's message that mean "the service behind the Thrift Server is unavailable".
_TRANSIENT_MARKERS = (
    "TTransportException",
    "Could not connect to meta store",
    "java.net.ConnectException",
    "SocketTimeoutException",
    "Connection refused",
    "Broken pipe",
)


class HiveAdapter:
    """Databases, tables and views of one Hive metastore (Spark Thrift Server + optional Presto)."""

    kinds = frozenset({ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW})

    def __init__(
        self,
        host: str,
        port: int = 10000,
        *,
        auth: str = "NOSASL",
        username: str | None = None,
        presto: PrestoClient | None = None,
        timeout: float = 120.0,
    ) -> None:
        if auth not in {"NOSASL", "NONE"}:
            raise ValueError(f"auth {auth!r} is not supported: use NOSASL or NONE (with a username)")
        self.host = host
        self.port = port
        self.auth = auth
        self.username = username
        self.presto = presto
        self.timeout = timeout
        self.stats = CallStats()
        self._conn: Any = None
        self._lock = threading.RLock()

    # --- the Adapter protocol -------------------------------------------------------------------

    @retrying()
    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        """Live state of the named resources (missing ones are absent from the result)."""
        if kind is ResourceKind.DATABASE:
            return dict(self._observe_databases(names))
        if kind is ResourceKind.TABLE:
            return dict(self._observe_tables(names))
        if kind is ResourceKind.VIEW:
            return dict(self._observe_views(names))
        raise PermanentBackendError(BACKEND, f"the Hive adapter does not handle {kind}")

    @retrying()
    def observe_kinds(
        self, requests: Mapping[ResourceKind, Sequence[str]]
    ) -> dict[ResourceKind, dict[str, Resource]]:
        """``observe`` of several kinds in one pass, sharing the round trips they have in common:
        tables and views come from one ``SHOW TABLE EXTENDED`` per database, and the columns of
        views' tables from the tables' ``GetColumns`` when the pass asked for those tables."""
        unknown = set(requests) - self.kinds
        if unknown:
            raise PermanentBackendError(BACKEND, f"the Hive adapter does not handle {sorted(unknown)}")
        out: dict[ResourceKind, dict[str, Resource]] = {}
        if ResourceKind.DATABASE in requests:
            out[ResourceKind.DATABASE] = dict(self._observe_databases(requests[ResourceKind.DATABASE]))
        tables = {split_qualified(n) for n in requests.get(ResourceKind.TABLE, [])}
        views = {split_qualified(n) for n in requests.get(ResourceKind.VIEW, [])}
        columns = self._get_columns(tables) if tables else {}
        extended = self._show_extended(set(columns) | views, missing_ok=True) if columns or views else {}
        if ResourceKind.TABLE in requests:
            out[ResourceKind.TABLE] = dict(self._tables_from(extended, columns))
        if ResourceKind.VIEW in requests:
            known = {t: columns.get(t, []) for t in tables}  # a requested table GetColumns missed is absent
            out[ResourceKind.VIEW] = dict(self._views_from(extended, views, known))
        return out

    @retrying()
    def apply(self, action: Action) -> ApplyResult:
        """Apply one action after re-reading the resource; idempotent."""
        if action.op is Op.REFUSE:
            raise PermanentBackendError(
                BACKEND, f"refusing to apply refused action {action.id}: {action.reason}"
            )
        handler = {
            (ResourceKind.DATABASE, Op.CREATE): self._create_database,
            (ResourceKind.DATABASE, Op.DELETE): self._drop_database,
            (ResourceKind.TABLE, Op.CREATE): self._create_table,
            (ResourceKind.TABLE, Op.UPDATE): self._update_table,
            (ResourceKind.TABLE, Op.DELETE): self._drop_table,
            (ResourceKind.VIEW, Op.CREATE): self._put_view,
            (ResourceKind.VIEW, Op.REPLACE): self._put_view,
            (ResourceKind.VIEW, Op.UPDATE): self._put_view,
            (ResourceKind.VIEW, Op.DELETE): self._drop_view,
        }.get((action.kind, action.op))
        if handler is None:
            raise PermanentBackendError(BACKEND, f"cannot apply {action.op} to a {action.kind}")
        changed, message = handler(action)
        log.info("hive apply", action=action.id, changed=changed, message=message)
        return ApplyResult(action_id=action.id, changed=changed, message=message)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: S110 - closing a broken connection may fail; nothing to do
                    pass
                self._conn = None

    # --- observe ----------------------------------------------------------------------------------

    def _observe_databases(self, names: Sequence[str]) -> dict[str, DatabaseResource]:
        wanted = sorted({check_hive_ident(n, "database") for n in names})
        if not wanted:
            return {}
        rows = self._query(f"SHOW DATABASES LIKE {spark_string_literal('|'.join(wanted))}", "show_databases")
        have = {str(r[0]) for r in rows}
        return {n: DatabaseResource(name=n) for n in wanted if n in have}

    def _observe_tables(self, names: Sequence[str]) -> dict[str, TableResource]:
        wanted = {split_qualified(n) for n in names}
        if not wanted:
            return {}
        columns = self._get_columns(wanted)
        return self._tables_from(self._show_extended(set(columns)), columns)

    def _tables_from(
        self, extended: dict[tuple[str, str], TableInfo], columns: dict[tuple[str, str], list[Column]]
    ) -> dict[str, TableResource]:
        out: dict[str, TableResource] = {}
        for (db, name), info in sorted(extended.items()):
            if (db, name) not in columns or info.type == "VIEW":
                continue
            props = info.properties
            if props is None:
                props = self._tblproperties(db, name)
            out[f"{db}.{name}"] = _table_resource(db, name, info, props, columns[(db, name)])
        return out

    def _observe_views(self, names: Sequence[str]) -> dict[str, ViewResource]:
        wanted = {split_qualified(n) for n in names}
        return self._views_from(self._show_extended(wanted, missing_ok=True), wanted, {})

    def _views_from(
        self,
        extended: dict[tuple[str, str], TableInfo],
        wanted: set[tuple[str, str]],
        known: dict[tuple[str, str], list[Column]],
    ) -> dict[str, ViewResource]:
        """Views among ``extended``; ``known`` holds columns already read (of tables, by name)."""
        found = {k: v for k, v in extended.items() if k in wanted and v.type == "VIEW"}
        parsed = {k: parse_presto_view(v.view_text or "") for k, v in found.items()}
        # All-column views report [] only while their listed columns still match their tables.
        tables = {split_qualified(t) for v in parsed.values() if v and v.all_columns for t, _ in v.segments}
        missing = tables - set(known)
        current = {**known, **(self._get_columns(missing) if missing else {})}
        out: dict[str, ViewResource] = {}
        for (db, name), view in sorted(parsed.items()):
            full = f"{db}.{name}"
            if view is None:
                presto_view = "Presto View" in (found[(db, name)].view_text or "")
                out[full] = ViewResource(name=full, target=UNRECOGNISED_VIEW if presto_view else SPARK_VIEW)
                continue
            cols = view.columns
            if view.all_columns:
                now = common_columns([current.get(split_qualified(t), []) for t, _ in view.segments])
                cols = [] if now == view.columns else view.columns
            plain = len(view.segments) == 1 and view.segments[0][1] is None
            out[full] = ViewResource(
                name=full,
                target=view.segments[-1][0],
                columns=cols,
                segments=[] if plain else [ViewSegment(table=t, since=since) for t, since in view.segments],
                time_column=view.time_column or ViewResource.model_fields["time_column"].default,
            )
        return out

    def _show_extended(
        self, tables: set[tuple[str, str]], *, missing_ok: bool = False
    ) -> dict[tuple[str, str], TableInfo]:
        """``SHOW TABLE EXTENDED`` for the given tables/views: one call per database."""
        out: dict[tuple[str, str], TableInfo] = {}
        for db in sorted({d for d, _ in tables}):
            names = sorted(t for d, t in tables if d == db)
            try:
                rows = self._query(
                    f"SHOW TABLE EXTENDED IN {quote_hive(db)} LIKE {spark_string_literal('|'.join(names))}",
                    "show_table_extended",
                )
            except PermanentBackendError as e:
                if missing_ok and "SCHEMA_NOT_FOUND" in str(e):
                    continue
                raise
            for row in rows:
                # LIKE patterns are regular expressions to Spark: keep exact names only.
                if (db, str(row[1])) in tables:
                    out[(db, str(row[1]))] = parse_table_info(str(row[3]))
        return out

    def _get_columns(self, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[Column]]:
        """Columns (partition columns last) of the given tables, in one GetColumns call."""
        tables = set(tables)
        dbs = "|".join(sorted({d for d, _ in tables}))
        names = "|".join(sorted({t for _, t in tables}))
        rows = self._metadata_columns(dbs, names)
        found: dict[tuple[str, str], list[tuple[int, Column]]] = {}
        for schema, table, column, type_name, position in rows:
            key = (schema, table)
            # GetColumns patterns are JDBC patterns ('_' matches any character): keep exact names.
            if key in tables:
                found.setdefault(key, []).append((position, Column(name=column, type=_hive_type(type_name))))
        return {k: [c for _, c in sorted(v, key=lambda p: p[0])] for k, v in found.items()}

    def _tblproperties(self, db: str, table: str) -> dict[str, str]:
        rows = self._query(f"SHOW TBLPROPERTIES {quote_hive_qualified(db, table)}", "show_tblproperties")
        return {str(k): str(v) for k, v in rows}

    def _observe_one_table(self, name: str) -> TableResource | None:  # for apply's re-check
        return self._observe_tables([name]).get(name)

    # --- apply: databases ---------------------------------------------------------------------

    def _create_database(self, action: Action) -> tuple[bool, str]:
        db = check_hive_ident(action.name, "database")
        if self._observe_databases([db]):
            return False, "database exists"
        self._execute(f"CREATE DATABASE IF NOT EXISTS {quote_hive(db)}", "create_database")
        return True, "database created"

    def _drop_database(self, action: Action) -> tuple[bool, str]:
        db = check_hive_ident(action.name, "database")
        if not self._observe_databases([db]):
            return False, "database absent"
        # RESTRICT: a database that still holds tables is not dropped (the error says so).
        self._execute(f"DROP DATABASE IF EXISTS {quote_hive(db)} RESTRICT", "drop_database")
        return True, "database dropped"

    # --- apply: tables --------------------------------------------------------------------------

    def _create_table(self, action: Action) -> tuple[bool, str]:
        desired = _desired(action, TableResource)
        live = self._observe_one_table(desired.name)
        if live is not None:
            owner = desired.properties.get(OWNER_PROPERTY)
            if live.properties.get(OWNER_PROPERTY) == owner:
                return False, "table exists"
            raise PermanentBackendError(
                BACKEND,
                f"table {desired.name} exists and is not owned by {owner!r} "
                f"({OWNER_PROPERTY}={live.properties.get(OWNER_PROPERTY)!r}); not taking it over",
            )
        self._execute(create_table_sql(desired), "create_table")
        return True, "table created"

    def _update_table(self, action: Action) -> tuple[bool, str]:
        desired = _desired(action, TableResource)
        db, table = split_qualified(desired.name)
        live = self._observe_one_table(desired.name)
        if live is None:
            raise PermanentBackendError(BACKEND, f"table {desired.name} does not exist; cannot update it")
        have = {c.name: c.type for c in live.columns}
        done: list[str] = []

        for ch in action.changes:
            m = re.fullmatch(r"columns\.([a-z_][a-z0-9_]*)\.name", ch.field)
            if m and ch.old in have and ch.new not in have:
                self._presto_alter(
                    db,
                    table,
                    f"RENAME COLUMN {quote_presto(str(ch.old))} TO {quote_presto(str(ch.new))}",
                    "rename",
                )
                have[str(ch.new)] = have.pop(str(ch.old))
                done.append(f"renamed {ch.old} → {ch.new}")
        for ch in action.changes:
            m = re.fullmatch(r"columns\.([a-z_][a-z0-9_]*)", ch.field)
            if m and ch.new is None and m.group(1) in have:
                self._presto_alter(db, table, f"DROP COLUMN {quote_presto(m.group(1))}", "drop_column")
                have.pop(m.group(1))
                done.append(f"dropped {m.group(1)}")

        add = [_column_change(ch) for ch in action.changes if _is_add(ch)]
        conflict = [(n, t) for n, t in add if n in have and normalize_hive_type(have[n]) != t]
        if conflict:
            raise PermanentBackendError(
                BACKEND,
                f"table {desired.name}: columns exist with other types: {conflict} (live changed since plan)",
            )
        missing = [(n, t) for n, t in add if n not in have]
        if missing:
            cols = ", ".join(f"{quote_hive(n)} {t}" for n, t in missing)
            self._execute(
                f"ALTER TABLE {quote_hive_qualified(db, table)} ADD COLUMNS ({cols})", "add_columns"
            )
            done.append("added " + ", ".join(n for n, _ in missing))

        props = {
            ch.field.removeprefix("properties."): desired.properties[ch.field.removeprefix("properties.")]
            for ch in action.changes
            if ch.field.startswith("properties.")
            and ch.field.removeprefix("properties.") in desired.properties
        }
        props = {k: v for k, v in props.items() if live.properties.get(k) != v}
        if props:
            self._execute(
                f"ALTER TABLE {quote_hive_qualified(db, table)} SET TBLPROPERTIES ({_props_sql(props)})",
                "set_tblproperties",
            )
            done.append("set " + ", ".join(sorted(props)))
        return bool(done), "; ".join(done) or "already up to date"

    def _drop_table(self, action: Action) -> tuple[bool, str]:
        db, table = split_qualified(action.name)
        if self._observe_one_table(action.name) is None:
            return False, "table absent"
        self._execute(f"DROP TABLE IF EXISTS {quote_hive_qualified(db, table)}", "drop_table")
        return True, "table dropped"

    def _presto_alter(self, db: str, table: str, clause: str, op: str) -> None:
        presto = self._need_presto(f"{op} (Spark cannot alter columns of a Hive table)")
        self.stats.count(f"presto.{op}")
        try:
            presto.execute(f"ALTER TABLE {self._presto_name(db, table)} {clause}", op=f"hive.{op}")
        except PermanentBackendError as e:
            if "PERMISSION_DENIED" not in str(e):
                raise
            setting = "hive.allow-drop-column" if op == "drop_column" else "hive.allow-rename-column"
            raise PermanentBackendError(
                BACKEND,
                f"{db}.{table}: Presto's Hive catalog refuses to {op.replace('_', ' ')} ({setting}=true is "
                f"not set) and Spark 3.5 cannot alter columns of a Hive table; nothing was changed ({e})",
            ) from e

    # --- apply: views ---------------------------------------------------------------------------

    def _put_view(self, action: Action) -> tuple[bool, str]:
        desired = _desired(action, ViewResource)
        live = self._observe_views([desired.name]).get(desired.name)
        if live is not None and not diff_view(desired, live, DiffContext()):
            return False, "view up to date"
        if live is not None and live.target == SPARK_VIEW:
            # Presto refuses to replace a view it cannot read ("Hive views are not supported").
            raise PermanentBackendError(
                BACKEND, f"{desired.name} is a view created by Spark; Presto cannot replace it: drop it first"
            )
        segments = view_segments(desired)
        if desired.columns:
            cols, all_columns = list(desired.columns), False
        else:
            tables = [split_qualified(t) for t, _ in segments]
            current = self._get_columns(set(tables))
            missing = [f"{d}.{t}" for d, t in tables if (d, t) not in current]
            if missing:
                raise PermanentBackendError(BACKEND, f"view {desired.name}: table(s) not found: {missing}")
            cols, all_columns = common_columns([current[k] for k in tables]), True
        vdb, vname = split_qualified(desired.name)
        sql = f"CREATE OR REPLACE VIEW {self._presto_name(vdb, vname)} AS " + self._view_query(
            segments, cols, all_columns, desired.time_column
        )
        presto = self._need_presto("create views")
        self.stats.count("presto.create_view")
        presto.execute(sql, op="hive.create_view")
        return True, "view now serves " + ", ".join(t if s is None else f"{t} from {s}" for t, s in segments)

    def _view_query(
        self, segments: list[tuple[str, str | None]], cols: list[str], all_columns: bool, time_column: str
    ) -> str:
        """``SELECT cols FROM t [pipectl_all] [WHERE since <= time < next since]``, UNION ALL per segment."""
        select = ", ".join(quote_presto(c) for c in cols)
        alias = f" {quote_presto(ALL_COLUMNS_ALIAS)}" if all_columns else ""
        tcol = quote_presto(check_hive_ident(time_column, "column"))
        parts = []
        for i, (table, since) in enumerate(segments):
            until = segments[i + 1][1] if i + 1 < len(segments) else None
            bounds = [f"{tcol} >= TIMESTAMP {presto_string_literal(_ts(since))}"] if since else []
            if until:
                bounds.append(f"{tcol} < TIMESTAMP {presto_string_literal(_ts(until))}")
            where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
            # every identifier is checked and quoted (quote_presto), timestamps checked (_ts)
            parts.append(f"SELECT {select} FROM {self._presto_name(*split_qualified(table))}{alias}{where}")  # noqa: S608
        return " UNION ALL ".join(parts)

    def _drop_view(self, action: Action) -> tuple[bool, str]:
        vdb, vname = split_qualified(action.name)
        if action.name not in self._observe_views([action.name]):
            return False, "view absent"
        presto = self._need_presto("drop views")
        self.stats.count("presto.drop_view")
        presto.execute(f"DROP VIEW IF EXISTS {self._presto_name(vdb, vname)}", op="hive.drop_view")
        return True, "view dropped"

    def _presto_name(self, db: str, table: str) -> str:
        presto = self._need_presto("address tables")
        return ".".join(quote_presto(p) for p in (check_hive_ident(presto.catalog, "catalog"), db, table))

    def _need_presto(self, what: str) -> PrestoClient:
        if self.presto is None:
            raise PermanentBackendError(BACKEND, f"a PrestoClient is needed to {what}")
        return self.presto

    # --- the Thrift Server ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            sock = TSocket.TSocket(self.host, self.port)
            sock.setTimeout(int(self.timeout * 1000))
            transport: Any
            if self.auth == "NOSASL":
                transport = TTransport.TBufferedTransport(sock)
            else:
                import thrift_sasl  # only for auth=NONE (SASL PLAIN without a password)

                user = self.username or "pipectl"
                transport = thrift_sasl.TSaslClientTransport(
                    lambda: hive.get_installed_sasl(
                        host=self.host,
                        sasl_auth="PLAIN",
                        service=None,
                        username=user,
                        password="x",  # noqa: S106 - SASL PLAIN wants a non-empty placeholder
                    ),
                    "PLAIN",
                    sock,
                )
            self.stats.count("connect")
            self._conn = hive.connect(thrift_transport=transport, username=self.username or "pipectl")
        return self._conn

    def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]:
        return self._run(sql, op, fetch=True)

    def _execute(self, sql: str, op: str) -> None:
        self._run(sql, op, fetch=False)

    def _run(self, sql: str, op: str, *, fetch: bool) -> list[tuple[Any, ...]]:
        with self._lock:
            self.stats.count(op)
            try:
                cursor = self._connection().cursor()
                try:
                    cursor.execute(sql)
                    # pyhive raises on fetchall() after DDL: only statements with a result set fetch.
                    rows = [tuple(r) for r in cursor.fetchall()] if fetch else []
                finally:
                    cursor.close()
            except Exception as e:  # the SDK raises thrift, socket and pyhive errors alike
                raise self._wrap(e, sql) from e
        return rows

    def _metadata_columns(
        self, schema_pattern: str, table_pattern: str
    ) -> list[tuple[str, str, str, str, int]]:
        """HiveServer2 GetColumns: (schema, table, column, type name, ordinal position) rows."""
        with self._lock:
            self.stats.count("get_columns")
            try:
                conn = self._connection()
                resp = conn.client.GetColumns(
                    ttypes.TGetColumnsReq(
                        sessionHandle=conn.sessionHandle, schemaName=schema_pattern, tableName=table_pattern
                    )
                )
                _check(resp)
                handle = resp.operationHandle
                rows: list[tuple[str, str, str, str, int]] = []
                try:
                    while True:
                        fetched = conn.client.FetchResults(
                            ttypes.TFetchResultsReq(
                                operationHandle=handle,
                                orientation=ttypes.TFetchOrientation.FETCH_NEXT,
                                maxRows=10000,
                            )
                        )
                        _check(fetched)
                        cols = [_column_values(c) for c in fetched.results.columns]
                        batch = list(zip(cols[1], cols[2], cols[3], cols[5], cols[16], strict=True))
                        rows += [(str(s), str(t), str(c), str(ty), int(p)) for s, t, c, ty, p in batch]
                        if len(batch) < 10000:
                            break
                finally:
                    conn.client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=handle))
            except Exception as e:
                raise self._wrap(e, f"GetColumns({schema_pattern}, {table_pattern})") from e
        return rows

    def _wrap(self, e: Exception, sql: str) -> BackendError:
        head = " ".join(sql.split())[:200]
        if isinstance(e, BackendError):
            return e
        if isinstance(e, TException | OSError) and not isinstance(e, pyhive_exc.Error):
            self.close()  # the connection is unusable; the retry opens a new one
            return TransientBackendError(
                BACKEND, f"Thrift Server unreachable: {type(e).__name__}: {e} ({head})"
            )
        message = _status_message(e)
        if any(marker in message for marker in _TRANSIENT_MARKERS):
            return TransientBackendError(BACKEND, f"{message[:500]} ({head})")
        return PermanentBackendError(BACKEND, f"{message[:800]} ({head})")


# --- helpers (pure) -------------------------------------------------------------------------------


@dataclass
class TableInfo:
    """What ``SHOW TABLE EXTENDED`` says about one table (its ``information`` column)."""

    type: str = ""
    provider: str = ""
    location: str | None = None
    serde: str = ""
    input_format: str = ""
    partition_columns: list[str] = field(default_factory=list)
    properties: dict[str, str] | None = field(default_factory=dict)
    view_text: str | None = None

    @property
    def format(self) -> str:
        if self.provider and self.provider.lower() != "hive":
            return f"spark:{self.provider.lower()}"
        for key in (self.serde.lower(), self.input_format.lower()):
            for marker, fmt in _SERDE_FORMATS:
                if marker in key:
                    return fmt
        return self.serde.rsplit(".", 1)[-1].lower() or "unknown"


_INFO_LINE = re.compile(r"^([A-Z][A-Za-z ]*): ?", re.M)
_PROP_KEY = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
_BACKTICKED = re.compile(r"`((?:[^`]|``)*)`")


def parse_table_info(text: str) -> TableInfo:
    """Parse Spark 3.5's ``SHOW TABLE EXTENDED`` information text."""
    entries: dict[str, str] = {}
    matches = list(_INFO_LINE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        entries.setdefault(m.group(1), text[m.end() : end].rstrip("\n"))
    parts = entries.get("Partition Columns", "")
    return TableInfo(
        type=entries.get("Type", "").strip().upper(),
        provider=entries.get("Provider", "").strip(),
        location=entries.get("Location", "").strip() or None,
        serde=entries.get("Serde Library", "").strip(),
        input_format=entries.get("InputFormat", "").strip(),
        partition_columns=[p.replace("``", "`") for p in _BACKTICKED.findall(parts)],
        properties=parse_properties(entries.get("Table Properties", "[]").strip()),
        view_text=entries.get("View Original Text"),
    )


def parse_properties(text: str) -> dict[str, str] | None:
    """Parse ``[k1=v1, k2=v2]`` (Spark sorts it by key); None when it cannot be read for sure.

    A piece that does not start with a key sorting after the previous one belongs to the previous
    value (which contained ", "). Such a value makes the whole list uncertain, so the caller reads
    the properties exactly instead.
    """
    if not (text.startswith("[") and text.endswith("]")):
        return None
    body = text[1:-1]
    if not body:
        return {}
    props: list[list[str]] = []
    for piece in body.split(", "):
        key, sep, value = piece.partition("=")
        if sep and _PROP_KEY.match(key) and (not props or key > props[-1][0]):
            props.append([key, value])
        else:
            return None
    return {k: v for k, v in props}


def _table_resource(
    db: str, name: str, info: TableInfo, props: dict[str, str], columns: list[Column]
) -> TableResource:
    parts = set(info.partition_columns)
    owner = None
    if OWNER_PROPERTY in props:
        owner = Owner(release=props[OWNER_PROPERTY], version=props.get(VERSION_PROPERTY, ""))
    return TableResource(
        name=f"{db}.{name}",
        owner=owner,
        columns=[c for c in columns if c.name not in parts],
        partition_columns=[c for c in columns if c.name in parts],
        format=info.format,
        properties=props,
        location=info.location,
    )


def create_table_sql(desired: TableResource) -> str:
    """Hive DDL (``STORED AS``) through Spark: a table Presto can read too."""
    db, table = split_qualified(desired.name)
    fmt = desired.format.lower()
    if fmt not in _STORED_AS:
        raise PermanentBackendError(
            BACKEND,
            f"table {desired.name}: format {desired.format!r} is not supported (use {sorted(_STORED_AS)})",
        )
    cols = ", ".join(f"{quote_hive(c.name)} {normalize_hive_type(c.type)}" for c in desired.columns)
    sql = f"CREATE TABLE {quote_hive_qualified(db, table)} ({cols})"
    if desired.partition_columns:
        parts = ", ".join(
            f"{quote_hive(c.name)} {normalize_hive_type(c.type)}" for c in desired.partition_columns
        )
        sql += f" PARTITIONED BY ({parts})"
    sql += f" STORED AS {_STORED_AS[fmt]}"
    if desired.location:
        sql += f" LOCATION {spark_string_literal(desired.location)}"
    if desired.properties:
        sql += f" TBLPROPERTIES ({_props_sql(desired.properties)})"
    return sql


def _props_sql(props: dict[str, str]) -> str:
    return ", ".join(f"{spark_string_literal(k)}={spark_string_literal(v)}" for k, v in sorted(props.items()))


@dataclass(frozen=True)
class ParsedView:
    segments: list[tuple[str, str | None]]
    columns: list[str]
    all_columns: bool
    time_column: str | None = None


_PRESTO_VIEW = re.compile(r"/\* Presto View: ([A-Za-z0-9+/=]+) \*/")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?$")


def parse_presto_view(view_text: str) -> ParsedView | None:
    """Decode the view text Presto stores in the metastore (``/* Presto View: <base64 JSON> */``)."""
    m = _PRESTO_VIEW.search(view_text)
    if not m:
        return None
    try:
        definition = json.loads(base64.b64decode(m.group(1)))
        return parse_view_sql(
            str(definition["originalSql"]), default_schema=str(definition.get("schema", ""))
        )
    except (ValueError, KeyError, TypeError):
        return None


def parse_view_sql(sql: str, default_schema: str = "") -> ParsedView | None:
    """Read back a view pipectl creates (see ``HiveAdapter._view_query``); anything else → None."""
    try:
        tree = sqlglot.parse_one(sql, read="presto")
    except sqlglot.errors.SqlglotError:
        return None
    selects: list[Any] = []
    while isinstance(tree, exp.Union):
        if tree.args.get("distinct"):
            return None
        selects.insert(0, tree.expression)
        tree = tree.this
    selects.insert(0, tree)
    parts = [_parse_select(s, default_schema) for s in selects]
    if any(p is None for p in parts):
        return None
    ok = [p for p in parts if p is not None]
    cols, alias = ok[0][1], ok[0][2]
    time_columns = {p[3] for p in ok if p[3]}
    if any(p[1] != cols or p[2] != alias for p in ok) or len(time_columns) > 1:
        return None
    segments: list[tuple[str, str | None]] = []
    for i, (table, _, _, _, since, until) in enumerate(ok):
        next_since = ok[i + 1][4] if i + 1 < len(ok) else None
        if until != next_since or (i > 0 and since is None):
            return None  # not contiguous stretches: not a view pipectl wrote
        segments.append((table, since))
    return ParsedView(
        segments=segments,
        columns=cols,
        all_columns=alias == ALL_COLUMNS_ALIAS,
        time_column=next(iter(time_columns), None),
    )


def _parse_select(
    tree: Any, default_schema: str
) -> tuple[str, list[str], str, str | None, str | None, str | None] | None:
    """(table, columns, alias, time column, since, until) of ``SELECT c… FROM t [a] [WHERE …]``."""
    if not isinstance(tree, exp.Select):
        return None
    if any(tree.args.get(k) for k in ("joins", "group", "having", "order", "limit", "distinct", "with")):
        return None
    tables = list(tree.find_all(exp.Table))
    if len(tables) != 1 or not (tables[0].db or default_schema):
        return None
    cols: list[str] = []
    for e in tree.expressions:
        if not isinstance(e, exp.Column) or e.table:
            return None
        cols.append(e.name)
    t = tables[0]
    time_column = since = until = None
    where = tree.args.get("where")
    if where is not None:
        for cond in _conjuncts(where.this):
            if not isinstance(cond, exp.GTE | exp.LT) or not isinstance(cond.this, exp.Column):
                return None
            value = _timestamp_literal(cond.expression)
            if value is None or (time_column and cond.this.name != time_column):
                return None
            time_column = cond.this.name
            if isinstance(cond, exp.GTE):
                since = value
            else:
                until = value
    return f"{t.db or default_schema}.{t.name}", cols, t.alias, time_column, since, until


def _conjuncts(e: Any) -> list[Any]:
    """``a AND (b AND c)`` → [a, b, c], parentheses removed (Presto stores ``WHERE (x < y)``)."""
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _timestamp_literal(e: Any) -> str | None:
    """The text of ``TIMESTAMP '…'`` (sqlglot reads it as a cast of a string)."""
    if (
        isinstance(e, exp.Cast | exp.TsOrDsToTimestamp)
        and isinstance(e.this, exp.Literal)
        and e.this.is_string
    ):
        return str(e.this.this)
    return None


def _ts(value: str) -> str:
    if not _TIMESTAMP.match(value):
        raise PermanentBackendError(BACKEND, f"segment start {value!r} is not 'YYYY-MM-DD HH:MM:SS'")
    return value


def common_columns(tables: list[list[Column]]) -> list[str]:
    """Columns every table has, in the order of the last (newest) one."""
    if not tables:
        return []
    shared = set.intersection(*({c.name for c in cs} for cs in tables))
    return [c.name for c in tables[-1] if c.name in shared]


def _hive_type(type_name: str) -> str:
    try:
        return normalize_hive_type(type_name)
    except ValueError:
        return type_name.strip().lower()


def _is_add(ch: FieldChange) -> bool:
    return (
        re.fullmatch(r"columns\.[a-z_][a-z0-9_]*", ch.field) is not None
        and ch.old is None
        and ch.new is not None
    )


def _column_change(ch: FieldChange) -> tuple[str, str]:
    return check_hive_ident(ch.field.removeprefix("columns."), "column"), normalize_hive_type(str(ch.new))


def _desired(action: Action, model: type[Any]) -> Any:
    if not isinstance(action.desired, model):
        raise PermanentBackendError(BACKEND, f"action {action.id} carries no desired {model.__name__}")
    return action.desired


def _column_values(col: Any) -> list[Any]:
    for attr in ("stringVal", "i32Val", "i64Val", "i16Val", "byteVal", "boolVal", "doubleVal", "binaryVal"):
        v = getattr(col, attr, None)
        if v is not None:
            return list(v.values)
    return []


def _check(resp: Any) -> None:
    ok = {ttypes.TStatusCode.SUCCESS_STATUS, ttypes.TStatusCode.SUCCESS_WITH_INFO_STATUS}
    if resp.status.statusCode not in ok:
        raise pyhive_exc.OperationalError(resp)


def _status_message(e: Exception) -> str:
    arg = e.args[0] if e.args else None
    status = getattr(arg, "status", None)
    if status is not None and getattr(status, "errorMessage", None):
        return str(status.errorMessage)
    return f"{type(e).__name__}: {e}"
