"""Transform adapter: materializes SQL transforms through PrestoDB (``PrestoClient``; no SDK of its own).

Every transform is served under its name ``<db>.<name>``, always a Presto view (Presto cannot read a
Spark view, and Spark cannot read a Presto view; dashboards query through Presto). The view carries
pipectl's record of the materialization in an unused CTE, the one place Presto keeps verbatim
(PrestoDB 0.287 drops SQL comments from a view's stored text and has no ``COMMENT ON``)::

    CREATE OR REPLACE VIEW "hive"."dev_telemetry"."host_metrics_daily" AS
    WITH "pipectl_transform" AS (SELECT '{"digest": "sha256:…", "upstream": […], …}' AS "meta")
    SELECT "host", … FROM "hive"."dev_telemetry"."host_metrics_daily__061bdcc2"

- ``view``: the view selects the compiled SQL (``SELECT cols FROM (<compiled>) "pipectl_body"``).
- ``table``: ``CREATE TABLE <name>__<digest8> COMMENT 'pipectl:{…}' WITH (format = 'PARQUET') AS
  <compiled>`` (a Hive-format Parquet table, atomic: Presto registers it at commit), then
  ``CREATE OR REPLACE VIEW <name>`` → that table (one metastore alter: readers see the old or the
  new table, never none). Applying the same digest again finds the table and the view in place
  and changes nothing; a table of that name with another digest is never reused.
- ``incremental``: the same, with ``partitioned_by`` (the first build is a full build, as is the
  build of a new digest, so the view never serves a half-filled table); scheduled runs then
  overwrite only their partition (``run_incremental``).

The previous materialization of a ``table``/``incremental`` transform is kept (going back to it is
a view swap, no rebuild); older ``<name>__<digest8>*`` tables pipectl made for it are dropped
(``keep_versions``). The contract is checked once more against the types Presto actually wrote
(``SHOW COLUMNS``) before the view swap; a mismatch drops the new table and fails the action.

Partition overwrite: ``DELETE FROM t WHERE <partition>`` (the Hive connector deletes whole
partitions, metadata only) then ``INSERT INTO t SELECT * FROM (<compiled>) WHERE <partition>``.
It is deterministic and safe to retry (a retry deletes and inserts again); between the two
statements a reader sees the partition empty. The atomic alternative is one INSERT with the Hive
session property ``<catalog>.insert_existing_partitions_behavior=OVERWRITE`` (verified on the local
PrestoDB 0.287: it replaces the partition, no catalog setting needed), but ``PrestoClient`` cannot
send session properties (pyhive's ``session_props``) yet. Setting the catalog-wide
``hive.insert-existing-partitions-behavior=OVERWRITE`` instead would change every INSERT of every
writer; it is not needed and should not be set.

Observe (round trips): 1 ``information_schema.tables`` + 1 ``information_schema.views`` (filtered
by name; a Spark view among them fails it, then ``SHOW CREATE VIEW`` per name) per database, +1
``$partitions`` read per incremental transform. A name held by a table, a Spark view or a view
without pipectl's record is reported ``managed=False`` (the rule refuses it).

Upstream order: before building, each upstream *transform* of the same release must be live at the
digest the plan was made against; the adapter waits for it (``upstream_wait``) and otherwise fails
the action rather than build on stale data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.presto import PrestoClient
from controller.model.errors import BackendError, PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    normalize_hive_type,
    presto_string_literal,
    quote_presto,
    split_qualified,
)
from controller.plan.actions import Action, Op
from controller.plan.resources import (
    Column,
    Owner,
    Resource,
    ResourceKind,
    TransformInput,
    TransformResource,
)

log = structlog.get_logger(__name__)

BACKEND = "presto"
META_CTE = "pipectl_transform"
COMMENT_PREFIX = "pipectl:"
_META = re.compile(r'"pipectl_transform"\s+AS\s+\(\s*SELECT\s+\'((?:[^\']|\'\')*)\'', re.S)
_COMMENT = re.compile(r"\nCOMMENT '((?:[^']|'')*)'")
_NOT_SUPPORTED = "Hive views are not supported"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^-?\d{1,19}$")
_RUN_KEY = re.compile(r"^[a-z0-9_]{1,40}$")


@dataclass(frozen=True)
class RunResult:
    """What a scheduled run did (returned to the caller, e.g. as an Airflow XCom)."""

    transform: str
    relation: str
    digest: str
    changed: bool
    partition: str | None = None
    rows: int | None = None
    message: str = ""


class TransformAdapter:
    """SQL transforms of one Presto catalog (the Hive metastore behind it)."""

    kinds = frozenset({ResourceKind.TRANSFORM})

    def __init__(
        self,
        presto: PrestoClient,
        *,
        keep_versions: int = 2,
        upstream_wait: float = 120.0,
        poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.presto = presto
        self.keep_versions = max(1, keep_versions)
        self.upstream_wait = upstream_wait
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self.stats = CallStats()

    # --- the Adapter protocol -------------------------------------------------------------------

    @retrying()
    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        """Live transforms among ``names`` (``db.name``); absent ones are missing from the result."""
        if kind is not ResourceKind.TRANSFORM:
            raise PermanentBackendError(BACKEND, f"the transform adapter does not handle {kind}")
        return {n: r for n, (r, _) in self._observe(names).items()}

    @retrying()
    def apply(self, action: Action) -> ApplyResult:
        """Materialize (create/update/replace) or delete one transform; idempotent."""
        if action.op is Op.REFUSE:
            raise PermanentBackendError(
                BACKEND, f"refusing to apply refused action {action.id}: {action.reason}"
            )
        if action.op is Op.DELETE:
            changed, message = self._delete(action.name)
        elif action.op in {Op.CREATE, Op.UPDATE, Op.REPLACE}:
            if not isinstance(action.desired, TransformResource):
                raise PermanentBackendError(BACKEND, f"action {action.id} carries no desired transform")
            changed, message = self._materialize(action.desired)
        else:
            raise PermanentBackendError(BACKEND, f"cannot apply {action.op} to a transform")
        log.info("transform apply", action=action.id, changed=changed, message=message)
        return ApplyResult(action_id=action.id, changed=changed, message=message)

    # --- scheduled runs -------------------------------------------------------------------------

    @retrying()
    def run_incremental(
        self,
        name: str,
        partition: str,
        *,
        expect_digest: str | None = None,
        expect_sql_digest: str | None = None,
    ) -> RunResult:
        """Overwrite one partition of incremental transform ``name`` (``db.name``) with the result of
        the SQL its current materialization was built from. ``partition``: ``2026-01-01`` (one
        partition column) or ``dt=2026-01-01/region=eu``. ``expect_digest`` / ``expect_sql_digest``:
        refuse unless the live materialization is that one / was compiled to that SQL (the caller's
        desired state), so a run never writes a partition with another version's SQL."""
        live, meta = self._served(name, expect_digest, expect_sql_digest)
        if live.materialized != "incremental":
            raise PermanentBackendError(
                BACKEND, f"{name} is materialized as {live.materialized}, not incremental"
            )
        relation = str(live.relation)
        columns = self._columns(relation)
        where = _partition_predicate(partition, columns)
        sql = str(meta.get("sql") or "")
        if not sql:
            raise PermanentBackendError(BACKEND, f"{name}: the live materialization does not record its SQL")
        target = self._q(relation)
        self._exec(f"DELETE FROM {target} WHERE {where}", "delete_partition")  # noqa: S608 - quoted, typed
        self._exec(
            f'INSERT INTO {target} SELECT * FROM (\n{sql}\n) "pipectl_run" WHERE {where}',  # noqa: S608 - quoted, checked
            "insert_partition",
        )
        rows = self._query(f"SELECT count(*) FROM {target} WHERE {where}", "count_partition")  # noqa: S608
        n = int(rows[0][0]) if rows else 0
        return RunResult(name, relation, live.digest, True, partition, n, f"partition {partition}: {n} rows")

    @retrying()
    def refresh_table(
        self,
        name: str,
        run_key: str,
        *,
        expect_digest: str | None = None,
        expect_sql_digest: str | None = None,
    ) -> RunResult:
        """Rebuild ``table`` transform ``name`` from current upstream data into
        ``<name>__<digest8>_<run_key>`` and swap the view to it; the same ``run_key`` again changes
        nothing (deterministic per scheduled run, e.g. ``r20260101`` for the run of that day)."""
        if not _RUN_KEY.match(run_key):
            raise PermanentBackendError(BACKEND, f"run key {run_key!r} must match [a-z0-9_]{{1,40}}")
        live, meta = self._served(name, expect_digest, expect_sql_digest)
        if live.materialized != "table":
            raise PermanentBackendError(BACKEND, f"{name} is materialized as {live.materialized}, not table")
        table = f"{_versioned(name, live.digest)}_{run_key}"
        if live.relation == table:
            return RunResult(name, table, live.digest, False, message=f"already served from {table}")
        desired = _resource_from_meta(name, meta, relation=None)
        self._ensure_table(desired, table, str(meta.get("sql") or ""))
        self._put_view(desired, table, {**meta, "relation": table, "built_at": _now()})
        self._cleanup(desired, keep={table, str(live.relation)}, spare=self.keep_versions - 2)
        return RunResult(name, table, live.digest, True, message=f"rebuilt into {table}")

    def run(
        self,
        name: str,
        partition: str | None = None,
        *,
        expect_digest: str | None = None,
        expect_sql_digest: str | None = None,
    ) -> RunResult:
        """A scheduled materialization: incremental → overwrite ``partition``; table → rebuild
        (run key from the partition, e.g. ``2026-01-01`` → ``r20260101``); view → nothing to do."""
        live, _ = self._served(name, expect_digest, expect_sql_digest)
        expect = {"expect_digest": expect_digest, "expect_sql_digest": expect_sql_digest}
        if live.materialized == "incremental":
            if not partition:
                raise PermanentBackendError(BACKEND, f"{name} is incremental: a run names its partition")
            return self.run_incremental(name, partition, **expect)
        if live.materialized == "table":
            key = "r" + re.sub(r"[^a-z0-9]+", "", (partition or "manual").lower())[:39]
            return self.refresh_table(name, key, **expect)
        return RunResult(name, name, live.digest, False, message="a view is always current")

    # --- observe ---------------------------------------------------------------------------------

    def _observe(self, names: Sequence[str]) -> dict[str, tuple[TransformResource, dict[str, Any]]]:
        wanted = sorted({split_qualified(n) for n in names})
        out: dict[str, tuple[TransformResource, dict[str, Any]]] = {}
        for db in sorted({d for d, _ in wanted}):
            in_db = [t for d, t in wanted if d == db]
            tables = self._tables(db)
            views = [t for t in in_db if tables.get(t) == "VIEW"]
            texts = self._view_texts(db, views)
            for t in in_db:
                full = f"{db}.{t}"
                typ = tables.get(t)
                if typ is None:
                    continue
                text = texts.get(t)
                meta = parse_meta(text) if text is not None else None
                if meta is None:
                    what = "a view pipectl's transforms did not create" if typ == "VIEW" else "a table"
                    if t in texts and texts[t] == _NOT_SUPPORTED:
                        what = "a Spark view"
                    foreign = TransformResource(
                        name=full, materialized=what, compiled_sql_digest="", managed=False
                    )
                    out[full] = (foreign, {})
                    continue
                relation = meta.get("relation")
                if relation is not None:
                    rdb, rname = split_qualified(str(relation))
                    present = (self._tables(rdb) if rdb != db else tables).get(rname) == "BASE TABLE"
                    relation = relation if present else None
                res = _resource_from_meta(full, meta, relation=relation)
                if res.materialized == "incremental" and relation:
                    res = res.model_copy(update={"partitions": self._partitions(str(relation))})
                out[full] = (res, meta)
        return out

    def _tables(self, db: str) -> dict[str, str]:
        """Every table and view of ``db``: name → ``BASE TABLE`` | ``VIEW`` (Spark views show as tables)."""
        check_hive_ident(db, "database")
        rows = self._query(
            f"SELECT table_name, table_type FROM {self._catalog()}.information_schema.tables "  # noqa: S608
            f"WHERE table_schema = {presto_string_literal(db)}",
            "list_tables",
        )
        return {str(r[0]): str(r[1]) for r in rows}

    def _view_texts(self, db: str, views: Sequence[str]) -> dict[str, str]:
        if not views:
            return {}
        names = ", ".join(presto_string_literal(check_hive_ident(v, "view")) for v in views)
        try:
            rows = self._query(
                f"SELECT table_name, view_definition FROM {self._catalog()}.information_schema.views "  # noqa: S608
                f"WHERE table_schema = {presto_string_literal(db)} AND table_name IN ({names})",
                "view_definitions",
            )
            return {str(r[0]): str(r[1]) for r in rows}
        except PermanentBackendError as e:
            if _NOT_SUPPORTED not in str(e):
                raise
        out: dict[str, str] = {}
        for v in views:  # one of them is a Spark view: read each on its own
            try:
                rows = self._query(f"SHOW CREATE VIEW {self._q(f'{db}.{v}')}", "show_create_view")
                out[v] = str(rows[0][0]) if rows else ""
            except PermanentBackendError as e:
                if _NOT_SUPPORTED not in str(e):
                    raise
                out[v] = _NOT_SUPPORTED
        return out

    def _partitions(self, relation: str) -> list[str]:
        db, t = split_qualified(relation)
        rows = self._query(
            f'SELECT * FROM {self._catalog()}.{quote_presto(db)}."{check_hive_ident(t, "table")}$partitions"',  # noqa: S608
            "partitions",
        )
        return sorted("/".join(str(v) for v in r) for r in rows)

    def _columns(self, relation: str) -> list[tuple[str, str, bool]]:
        """(name, Presto type, is partition key) of a table, in order."""
        rows = self._query(f"SHOW COLUMNS FROM {self._q(relation)}", "show_columns")
        return [(str(r[0]), str(r[1]), "partition key" in str(r[2])) for r in rows]

    def _table_comment(self, relation: str) -> dict[str, Any] | None:
        rows = self._query(f"SHOW CREATE TABLE {self._q(relation)}", "show_create_table")
        m = _COMMENT.search(str(rows[0][0])) if rows else None
        if not m:
            return None
        text = m.group(1).replace("''", "'")
        if not text.startswith(COMMENT_PREFIX):
            return None
        try:
            meta = json.loads(text[len(COMMENT_PREFIX) :])
        except ValueError:
            return None
        return meta if isinstance(meta, dict) else None

    # --- materialize -------------------------------------------------------------------------------

    def _materialize(self, desired: TransformResource) -> tuple[bool, str]:
        found = self._observe([desired.name]).get(desired.name)
        live = found[0] if found else None
        if live is not None and not live.managed:
            raise PermanentBackendError(
                BACKEND,
                f"{desired.name} exists ({live.materialized}), not created by pipectl; not replacing it",
            )
        if live is not None and live.owner and desired.owner and live.owner.release != desired.owner.release:
            raise PermanentBackendError(
                BACKEND,
                f"transform {desired.name} belongs to release {live.owner.release!r}; not taking it over",
            )
        if (
            live is not None
            and live.digest == desired.digest
            and (desired.materialized == "view" or live.relation is not None)
        ):
            return False, "already materialized at this digest"
        if not desired.compiled_sql:
            raise PermanentBackendError(BACKEND, f"transform {desired.name} carries no compiled SQL")
        self._wait_for_upstream(desired)
        meta = _meta(desired, relation=None)
        if desired.materialized == "view":
            self._put_view(desired, None, meta)
            return True, f"view {desired.name} created from the compiled SQL ({_short(desired.digest)})"
        table = _versioned(desired.name, desired.digest)
        built = self._ensure_table(desired, table, desired.compiled_sql)
        self._put_view(desired, table, _meta(desired, relation=table))
        keep = {table} | ({live.relation} if live is not None and live.relation else set())
        dropped = self._cleanup(desired, keep=keep, spare=self.keep_versions - len(keep))
        what = "built" if built else "found"
        extra = f"; dropped {', '.join(dropped)}" if dropped else ""
        return True, f"{what} {table}; view {desired.name} now serves it{extra}"

    def _ensure_table(self, desired: TransformResource, table: str, sql: str) -> bool:
        """CTAS ``table`` unless it exists at the desired digest; True when built."""
        db, name = split_qualified(table)
        if self._tables(db).get(name) == "BASE TABLE":
            meta = self._table_comment(table)
            if meta is not None and meta.get("digest") == desired.digest:
                return False
            raise PermanentBackendError(
                BACKEND,
                f"{table} exists but was not built by pipectl at {_short(desired.digest)}; not reusing it",
            )
        if not sql:
            raise PermanentBackendError(BACKEND, f"{desired.name}: no SQL to build {table} from")
        comment = COMMENT_PREFIX + json.dumps(
            _table_meta(desired, table), sort_keys=True, separators=(",", ":")
        )
        props = ["format = 'PARQUET'"]
        if desired.materialized == "incremental" and desired.partition_by:
            parts = ", ".join(
                presto_string_literal(check_hive_ident(p, "column")) for p in desired.partition_by
            )
            props.append(f"partitioned_by = ARRAY[{parts}]")
        self._exec(
            f"CREATE TABLE {self._q(table)} COMMENT {presto_string_literal(comment)} "
            f"WITH ({', '.join(props)}) AS\n{sql}",
            "create_table_as",
        )
        broken = _contract_mismatch(desired, self._columns(table))
        if broken:
            self._exec(f"DROP TABLE IF EXISTS {self._q(table)}", "drop_table")
            raise PermanentBackendError(
                BACKEND, f"contract of {desired.name} broken by the types Presto wrote: {'; '.join(broken)}"
            )
        return True

    def _put_view(self, desired: TransformResource, table: str | None, meta: dict[str, Any]) -> None:
        record = presto_string_literal(json.dumps(meta, sort_keys=True, separators=(",", ":")))
        if table is None:
            cols = ", ".join(quote_presto(c.name) for c in desired.columns) or "*"
            body = f'SELECT {cols} FROM (\n{desired.compiled_sql}\n) "pipectl_body"'  # noqa: S608 - compiled SQL
        else:
            cols = ", ".join(quote_presto(c) for c, _, _ in self._columns(table))
            body = f"SELECT {cols} FROM {self._q(table)}"  # noqa: S608 - quoted identifiers
        self._exec(
            f"CREATE OR REPLACE VIEW {self._q(desired.name)} AS\n"
            f'WITH "{META_CTE}" AS (SELECT {record} AS "meta")\n{body}',
            "create_view",
        )

    def _cleanup(self, desired: TransformResource, keep: set[str], spare: int) -> list[str]:
        """Drop this transform's ``<name>__<digest8>*`` tables but ``keep`` and the ``spare`` newest."""
        db, name = split_qualified(desired.name)
        pattern = re.compile(rf"^{re.escape(name)}__[0-9a-f]{{8}}(_[a-z0-9_]+)?$")
        candidates = sorted(
            t for t, typ in self._tables(db).items() if typ == "BASE TABLE" and pattern.match(t)
        )
        extra = [f"{db}.{t}" for t in candidates if f"{db}.{t}" not in keep]
        dropped: list[str] = []
        metas = {t: self._table_comment(t) for t in extra}
        # newest first by build time recorded in the table comment; keep ``spare`` of them
        ordered = sorted(extra, key=lambda t: str((metas[t] or {}).get("built_at", "")), reverse=True)
        for t in ordered[max(0, spare) :]:
            meta = metas[t]
            if meta is None or meta.get("transform") != desired.name:
                continue  # not ours: leave it
            self._exec(f"DROP TABLE IF EXISTS {self._q(t)}", "drop_table")
            dropped.append(t)
        return dropped

    def _delete(self, name: str) -> tuple[bool, str]:
        found = self._observe([name]).get(name)
        if found is None:
            return False, "transform absent"
        live, _ = found
        if not live.managed:
            raise PermanentBackendError(BACKEND, f"{name} was not created by pipectl; not deleting it")
        self._exec(f"DROP VIEW IF EXISTS {self._q(name)}", "drop_view")
        dropped = self._cleanup(live, keep=set(), spare=0) if live.materialized != "view" else []
        return True, "dropped the view" + (f" and {', '.join(dropped)}" if dropped else "")

    def _wait_for_upstream(self, desired: TransformResource) -> None:
        pending = {u.relation: u for u in desired.upstream if u.kind == "transform"}
        if not pending:
            return
        deadline = self._clock() + self.upstream_wait
        while True:
            live = self._observe(list(pending))
            late = [
                u
                for rel, u in pending.items()
                if rel not in live or live[rel][0].digest != u.digest or not _is_served(live[rel][0])
            ]
            if not late:
                return
            if self._clock() >= deadline:
                names = ", ".join(f"{u.ref} (want {_short(u.digest)})" for u in late)
                raise PermanentBackendError(
                    BACKEND,
                    f"{desired.name}: upstream transform(s) {names} not materialized at the planned digest "
                    f"after {self.upstream_wait:.0f}s; not building on stale inputs",
                )
            self._sleep(self.poll_interval)

    def _served(
        self, name: str, expect_digest: str | None = None, expect_sql_digest: str | None = None
    ) -> tuple[TransformResource, dict[str, Any]]:
        found = self._observe([name]).get(name)
        if found is None:
            raise PermanentBackendError(
                BACKEND, f"transform {name} is not materialized (reconcile the stage first)"
            )
        live, meta = found
        if not live.managed:
            raise PermanentBackendError(BACKEND, f"{name} was not created by pipectl")
        if expect_digest is not None and live.digest != expect_digest:
            raise PermanentBackendError(
                BACKEND,
                f"transform {name} is live at {_short(live.digest)}, not {_short(expect_digest)}: the "
                "controller has not materialized the current version yet; not running the old one",
            )
        if expect_sql_digest is not None and live.compiled_sql_digest != expect_sql_digest:
            raise PermanentBackendError(
                BACKEND,
                f"transform {name} was built from SQL {_short(live.compiled_sql_digest)}, not "
                f"{_short(expect_sql_digest)}: the controller has not materialized the current SQL yet",
            )
        if live.materialized != "view" and not live.relation:
            raise PermanentBackendError(BACKEND, f"transform {name}: the table its view serves is missing")
        return live, meta

    # --- Presto -------------------------------------------------------------------------------------

    def _catalog(self) -> str:
        return quote_presto(check_hive_ident(self.presto.catalog, "catalog"))

    def _q(self, relation: str) -> str:
        db, name = split_qualified(relation)
        return f"{self._catalog()}.{quote_presto(db)}.{quote_presto(name)}"

    def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]:
        self.stats.count(op)
        return self.presto.query(sql, op=f"transform.{op}")

    def _exec(self, sql: str, op: str) -> None:
        self.stats.count(op)
        try:
            self.presto.execute(sql, op=f"transform.{op}")
        except BackendError:
            log.warning("transform statement failed", op=op, statement=" ".join(sql.split())[:300])
            raise


# --- helpers (pure) ---------------------------------------------------------------------------------


def parse_meta(view_text: str) -> dict[str, Any] | None:
    """pipectl's record in a transform's view text (``WITH "pipectl_transform" AS (SELECT '…')``)."""
    m = _META.search(view_text)
    if not m:
        return None
    try:
        meta = json.loads(m.group(1).replace("''", "'"))
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and "digest" in meta else None


def _now() -> str:
    """Build time, sortable as text (orders a transform's tables for clean-up)."""
    return f"{time.time():017.3f}"


def _short(d: str) -> str:
    algo, sep, hexpart = d.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else d[:12]


def _versioned(name: str, digest: str) -> str:
    """``db.name`` + digest → ``db.name__<first 8 hex>``."""
    hexpart = digest.partition(":")[2] or digest
    return f"{name}__{hexpart[:8]}"


def _is_served(live: TransformResource) -> bool:
    return live.managed and (live.materialized == "view" or live.relation is not None)


def _meta(desired: TransformResource, relation: str | None) -> dict[str, Any]:
    meta = _table_meta(desired, relation)
    meta["upstream"] = [u.model_dump() for u in desired.upstream]
    if desired.materialized != "view":
        meta["sql"] = desired.compiled_sql  # what scheduled runs execute
    return meta


def _table_meta(desired: TransformResource, relation: str | None) -> dict[str, Any]:
    return {
        "v": 1,
        "transform": desired.name,
        "release": desired.owner.release if desired.owner else None,
        "version": desired.owner.version if desired.owner else None,
        "materialized": desired.materialized,
        "digest": desired.digest,
        "sql_digest": desired.compiled_sql_digest,
        "relation": relation,
        "partition_by": list(desired.partition_by),
        "columns": [c.model_dump() for c in desired.columns],
        "contract": None if desired.contract is None else [c.model_dump() for c in desired.contract],
        "built_at": _now(),
    }


def _resource_from_meta(name: str, meta: dict[str, Any], relation: str | None) -> TransformResource:
    owner = None
    if meta.get("release"):
        owner = Owner(release=str(meta["release"]), version=str(meta.get("version") or ""))
    return TransformResource(
        name=name,
        owner=owner,
        materialized=str(meta.get("materialized", "view")),
        compiled_sql_digest=str(meta.get("sql_digest", "")),
        digest=str(meta.get("digest", "")),
        upstream=[TransformInput.model_validate(u) for u in meta.get("upstream") or []],
        refs=[str(u.get("ref")) for u in meta.get("upstream") or []],
        columns=[Column.model_validate(c) for c in meta.get("columns") or []],
        contract=None
        if meta.get("contract") is None
        else [Column.model_validate(c) for c in meta["contract"]],
        partition_by=[str(p) for p in meta.get("partition_by") or []],
        relation=relation,
    )


_PRESTO_TO_HIVE = {"varchar": "string", "integer": "int", "real": "float", "varbinary": "binary"}


def presto_to_hive_type(presto_type: str) -> str:
    """``varchar`` → ``string``, ``integer`` → ``int``, ``array(varchar)`` → ``array<string>``, …"""
    t = presto_type.strip().lower()
    if t in _PRESTO_TO_HIVE:
        return _PRESTO_TO_HIVE[t]
    m = re.fullmatch(r"array\((.*)\)", t)
    if m:
        return f"array<{presto_to_hive_type(m.group(1))}>"
    m = re.fullmatch(r"map\(([^,]+),\s*(.*)\)", t)
    if m:
        return f"map<{presto_to_hive_type(m.group(1))},{presto_to_hive_type(m.group(2))}>"
    m = re.fullmatch(r"timestamp(\(\d+\))?", t)
    if m:
        return "timestamp"
    try:
        return normalize_hive_type(t)
    except ValueError:
        return t


def _contract_mismatch(desired: TransformResource, columns: Sequence[tuple[str, str, bool]]) -> list[str]:
    if desired.contract is None:
        return []
    got = {n: presto_to_hive_type(t) for n, t, _ in columns}
    want = {c.name: c.type for c in desired.contract}
    out = [f"column {n} missing (declared {t})" for n, t in want.items() if n not in got]
    out += [f"column {n} is {got[n]}, declared {t}" for n, t in want.items() if n in got and got[n] != t]
    out += [f"column {n} ({got[n]}) is not declared" for n in got if n not in want]
    return out


def _partition_predicate(partition: str, columns: Sequence[tuple[str, str, bool]]) -> str:
    """``2026-01-01`` or ``dt=2026-01-01/k=v`` → a typed ``"dt" = '2026-01-01' AND …`` predicate."""
    keys = [(n, t) for n, t, is_part in columns if is_part]
    if not keys:
        raise PermanentBackendError(BACKEND, "the table has no partition columns")
    if "=" in partition:
        values = dict(p.split("=", 1) for p in partition.split("/"))
    elif len(keys) == 1:
        values = {keys[0][0]: partition}
    else:
        raise PermanentBackendError(
            BACKEND, f"partition {partition!r}: name every partition column ({', '.join(n for n, _ in keys)})"
        )
    if set(values) != {n for n, _ in keys}:
        raise PermanentBackendError(
            BACKEND, f"partition {partition!r} must name exactly {', '.join(n for n, _ in keys)}"
        )
    parts = []
    for n, t in keys:
        v = values[n]
        t = t.lower()
        if t.startswith("varchar") or t.startswith("char"):
            lit = presto_string_literal(v)
        elif t == "date" and _DATE.match(v):
            lit = f"DATE {presto_string_literal(v)}"
        elif t in {"tinyint", "smallint", "integer", "bigint"} and _INT.match(v):
            lit = v
        else:
            raise PermanentBackendError(BACKEND, f"partition value {v!r} does not fit column {n} ({t})")
        parts.append(f"{quote_presto(check_hive_ident(n, 'column'))} = {lit}")
    return " AND ".join(parts)
