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
- ``observe_scope`` (a pass's shared snapshot) reads a whole database; with ``metastore_uri`` it
  asks the metastore's Thrift API instead (``hive_metastore``: 2 calls per database, exact properties;
  1 per database when the snapshot's prefetch first lists up to 200 databases in one call).

Idempotence: ``apply`` re-reads the resource first and only issues the statements whose effect is
missing; an action whose effect is present makes no changing call and returns ``changed=False``.
A transient failure (connection lost, metastore unavailable) retries the whole ``apply``, which
re-reads before acting again.

Beside this module (the adapter: observe and apply): ``hive_parse`` reads what Spark and Presto
report, ``hive_ddl`` writes the SQL, ``hive_thrift`` holds the Thrift Server connection (the one
module that imports ``pyhive.hive``). Their public names are importable from here too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog

from controller.adapters import hive_iceberg as ice
from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.hive_ddl import columns_to_add, props_sql, view_query
from controller.adapters.hive_ddl import create_table_sql as create_table_sql
from controller.adapters.hive_maintenance import IcebergMaintenance
from controller.adapters.hive_metastore import MetastoreClient, NotificationCursor
from controller.adapters.hive_parse import ALL_COLUMNS_ALIAS as ALL_COLUMNS_ALIAS
from controller.adapters.hive_parse import BACKEND as BACKEND
from controller.adapters.hive_parse import ParsedView as ParsedView
from controller.adapters.hive_parse import TableInfo as TableInfo
from controller.adapters.hive_parse import common_columns as common_columns
from controller.adapters.hive_parse import hive_type, table_resource
from controller.adapters.hive_parse import parse_presto_view as parse_presto_view
from controller.adapters.hive_parse import parse_properties as parse_properties
from controller.adapters.hive_parse import parse_table_info as parse_table_info
from controller.adapters.hive_parse import parse_view_sql as parse_view_sql
from controller.adapters.hive_scopes import HiveScopes
from controller.adapters.hive_thrift import HiveThriftConnection, check_auth
from controller.adapters.presto import PrestoClient
from controller.model.errors import PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    quote_hive,
    quote_hive_qualified,
    quote_presto,
    spark_string_literal,
    split_qualified,
)
from controller.model.secret import Secret
from controller.plan.actions import Action, DiffContext, Op
from controller.plan.resources import (
    Column,
    DatabaseResource,
    KeySplit,
    Resource,
    ResourceKind,
    TableResource,
    ViewResource,
    ViewSegment,
)
from controller.plan.rules.hive import OWNER_PROPERTY, diff_view, view_segments

log = structlog.get_logger(__name__)

UNRECOGNISED_VIEW = "(unrecognised view definition)"
SPARK_VIEW = "(a Spark view, unreadable by Presto)"


class HiveAdapter(HiveThriftConnection, HiveScopes, IcebergMaintenance):
    """Databases, tables and views of one Hive metastore (Spark Thrift Server + optional Presto).

    The Thrift Server connection (``close``, ``_query``, ``_execute``, ``_metadata_columns``) comes
    from ``HiveThriftConnection``, the snapshot's whole-scope reads from ``HiveScopes``, Iceberg
    table maintenance (``maintain``) from ``IcebergMaintenance``."""

    kinds = frozenset({ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW})

    def __init__(
        self,
        host: str,
        port: int = 10000,
        *,
        auth: str = "NOSASL",
        username: str | None = None,
        password: Secret | None = None,
        presto: PrestoClient | None = None,
        timeout: float = 120.0,
        metastore_uri: str | None = None,
    ) -> None:
        check_auth(auth, username, password)
        self.host = host
        self.port = port
        self.auth = auth
        self.username = username
        self.password = password
        self.presto = presto
        self.timeout = timeout
        self.stats = CallStats()
        # observe_scope's bulk reads, when the environment names the metastore (hive_metastore)
        self.metastore = MetastoreClient(metastore_uri, self.stats, timeout) if metastore_uri else None
        self.events = NotificationCursor(self.metastore) if self.metastore is not None else None
        self._conn: Any = None
        self._lock = threading.RLock()
        self._iceberg: dict[tuple[str, str], bool] = {}  # is (db, table) an Iceberg table

    def close(self) -> None:
        """Close the Thrift Server connection and the metastore's (if open)."""
        super().close()
        if self.metastore is not None:
            self.metastore.close()

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
        if action.op is Op.REFUSE or action.pending:  # a refusal, or awaiting approval
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
            self._iceberg[(db, name)] = ice.is_iceberg(props)
            if ice.is_iceberg(props):  # columns, transforms, properties from the iceberg catalog
                out[f"{db}.{name}"] = self._iceberg_table(db, name, info.location)
                continue
            out[f"{db}.{name}"] = table_resource(db, name, info, props, columns[(db, name)])
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
        tables = {
            split_qualified(t) for v in parsed.values() if v and v.all_columns for t, _ in _all_segments(v)
        }
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
                now = common_columns([current.get(split_qualified(t), []) for t, _ in _all_segments(view)])
                cols = [] if now == view.columns else view.columns
            plain = len(view.segments) == 1 and view.segments[0][1] is None
            out[full] = ViewResource(
                name=full,
                target=view.segments[-1][0],
                columns=cols,
                segments=[] if plain else [ViewSegment(table=t, since=since) for t, since in view.segments],
                time_column=view.time_column or ViewResource.model_fields["time_column"].default,
                key_split=view.split,
            )
        return out

    def _show_extended(
        self, tables: set[tuple[str, str]], *, missing_ok: bool = False, every: bool = False
    ) -> dict[tuple[str, str], TableInfo]:
        """``SHOW TABLE EXTENDED`` for the given tables/views (``every``: the names are patterns,
        keep every row): one call per database."""
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
                if every and str(row[0]) != db:  # a session's temporary view (no database)
                    continue
                # LIKE patterns are regular expressions to Spark: keep exact names only.
                if every or (db, str(row[1])) in tables:
                    out[(db, str(row[1]))] = parse_table_info(str(row[3]))
        return out

    def _get_columns(
        self, tables: Iterable[tuple[str, str]], *, exact: bool = True
    ) -> dict[tuple[str, str], list[Column]]:
        """Columns (partition columns last) of the given tables, in one GetColumns call (``exact``
        False: the names are JDBC patterns, keep every row)."""
        tables = set(tables)
        dbs = "|".join(sorted({d for d, _ in tables}))
        names = "|".join(sorted({t for _, t in tables}))
        rows = self._metadata_columns(dbs, names)
        found: dict[tuple[str, str], list[tuple[int, Column]]] = {}
        for schema, table, column, type_name, position in rows:
            key = (schema, table)
            # GetColumns patterns are JDBC patterns ('_' matches any character): keep exact names.
            if key in tables or not exact:
                found.setdefault(key, []).append((position, Column(name=column, type=hive_type(type_name))))
        return {k: [c for _, c in sorted(v, key=lambda p: p[0])] for k, v in found.items()}

    def _tblproperties(self, db: str, table: str) -> dict[str, str]:
        rows = self._query(f"SHOW TBLPROPERTIES {quote_hive_qualified(db, table)}", "show_tblproperties")
        return {str(k): str(v) for k, v in rows}

    def _iceberg_table(self, db: str, name: str, location: str | None) -> TableResource:
        target = ice.iceberg_name(db, name)
        describe = self._query(f"DESCRIBE TABLE {target}", "describe_iceberg")
        props = {str(k): str(v) for k, v in self._query(f"SHOW TBLPROPERTIES {target}", "show_tblproperties")}
        return ice.table_resource(db, name, describe, props, location)

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
        iceberg = desired.format == ice.FORMAT
        self._execute(ice.create_sql(desired) if iceberg else create_table_sql(desired), "create_table")
        self._iceberg[split_qualified(desired.name)] = iceberg
        return True, "table created"

    def _update_table(self, action: Action) -> tuple[bool, str]:
        desired = _desired(action, TableResource)
        db, table = split_qualified(desired.name)
        live = self._observe_one_table(desired.name)
        if live is None:
            raise PermanentBackendError(BACKEND, f"table {desired.name} does not exist; cannot update it")
        if live.format == ice.FORMAT:  # schema evolution by field id, in Spark (hive_iceberg)
            return self._update_iceberg(desired, live, action)
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

        missing = columns_to_add(desired.name, action.changes, have)
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
                f"ALTER TABLE {quote_hive_qualified(db, table)} SET TBLPROPERTIES ({props_sql(props)})",
                "set_tblproperties",
            )
            done.append("set " + ", ".join(sorted(props)))
        return bool(done), "; ".join(done) or "already up to date"

    def _update_iceberg(self, desired: TableResource, live: TableResource, a: Action) -> tuple[bool, str]:
        db, table = split_qualified(desired.name)
        steps = ice.update_statements(desired, live, a.changes)
        for sql, op, _ in steps:
            self._execute(sql, op)
        done = [m for _, _, m in steps]
        if ice.breaks_views(a.changes):  # repair the views Presto now fails as stale (on a retry too)
            extended = self._show_extended({(db, "*")}, missing_ok=True, every=True)
            for fix in ice.view_repairs(extended, db, table, self._get_columns({(db, table)})[(db, table)]):
                self._put_view(fix, force=True)
                done.append(f"recreated view {fix.name}")
        return bool(done), "; ".join(done) or "already up to date"

    def _drop_table(self, action: Action) -> tuple[bool, str]:
        db, table = split_qualified(action.name)
        live = self._observe_one_table(action.name)
        if live is None:
            return False, "table absent"
        name = ice.iceberg_name(db, table) if live.format == ice.FORMAT else quote_hive_qualified(db, table)
        self._execute(f"DROP TABLE IF EXISTS {name}", "drop_table")
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

    def _put_view(self, action: Action, *, force: bool = False) -> tuple[bool, str]:
        desired = _desired(action, ViewResource)
        live = self._observe_views([desired.name]).get(desired.name)
        if live is not None and not force and not diff_view(desired, live, DiffContext()):
            return False, "view up to date"
        if live is not None and live.target == SPARK_VIEW:
            # Presto refuses to replace a view it cannot read ("Hive views are not supported").
            raise PermanentBackendError(
                BACKEND, f"{desired.name} is a view created by Spark; Presto cannot replace it: drop it first"
            )
        segments = view_segments(desired)
        split = desired.key_split
        if desired.columns:
            cols, all_columns = list(desired.columns), False
        else:
            canary = [(s.table, s.since) for s in split.segments] if split else []
            tables = list(dict.fromkeys(split_qualified(t) for t, _ in segments + canary))
            current = self._get_columns(set(tables))
            missing = [f"{d}.{t}" for d, t in tables if (d, t) not in current]
            if missing:
                raise PermanentBackendError(BACKEND, f"view {desired.name}: table(s) not found: {missing}")
            cols, all_columns = common_columns([current[k] for k in tables]), True
        vdb, vname = split_qualified(desired.name)
        sql = f"CREATE OR REPLACE VIEW {self._presto_name(vdb, vname)} AS " + self._view_query(
            segments, cols, all_columns, desired.time_column, split
        )
        presto = self._need_presto("create views")
        self.stats.count("presto.create_view")
        presto.execute(sql, op="hive.create_view")
        serves = ", ".join(t if s is None else f"{t} from {s}" for t, s in segments)
        if split is not None and 0 < split.percent:
            side = ", ".join(
                s.table if s.since is None else f"{s.table} from {s.since}" for s in split.segments
            )
            serves = (
                f"{split.percent}% of keys ({', '.join(split.columns)}) from {side}, the rest from {serves}"
            )
        return True, "view now serves " + serves

    def _view_query(
        self,
        segments: list[tuple[str, str | None]],
        cols: list[str],
        all_columns: bool,
        time_column: str,
        split: KeySplit | None = None,
    ) -> str:
        """``SELECT cols FROM t [pipectl_all] [WHERE since <= time < next since]``, UNION ALL per segment
        (and per side of a key split)."""
        return view_query(segments, cols, all_columns, time_column, self._presto_name, split)

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
        catalog = ice.ICEBERG_CATALOG if self._is_iceberg(db, table) else presto.catalog
        return ".".join(quote_presto(p) for p in (check_hive_ident(catalog, "catalog"), db, table))

    def _is_iceberg(self, db: str, table: str) -> bool:
        """Whether Presto must address (db, table) in its ``iceberg`` catalog: known from observe or
        create, else read once (1 ``SHOW TABLE EXTENDED``); a missing name is not remembered."""
        if (db, table) not in self._iceberg:
            info = self._show_extended({(db, table)}, missing_ok=True).get((db, table))
            if info is None:
                return False
            props = info.properties if info.properties is not None else self._tblproperties(db, table)
            self._iceberg[(db, table)] = ice.is_iceberg(props)
        return self._iceberg[(db, table)]

    def _need_presto(self, what: str) -> PrestoClient:
        if self.presto is None:
            raise PermanentBackendError(BACKEND, f"a PrestoClient is needed to {what}")
        return self.presto


# --- helpers (pure) -------------------------------------------------------------------------------


def _desired(action: Action, model: type[Any]) -> Any:
    if not isinstance(action.desired, model):
        raise PermanentBackendError(BACKEND, f"action {action.id} carries no desired {model.__name__}")
    return action.desired


def _all_segments(view: ParsedView) -> list[tuple[str, str | None]]:
    """Every (table, since) a parsed view reads, both sides of a key split."""
    canary = [(s.table, s.since) for s in view.split.segments] if view.split else []
    return view.segments + canary
