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

Beside this module (the adapter: materialize, delete, scheduled runs): ``transforms_catalog``
reads the catalog and sends the statements, ``transforms_record`` holds pipectl's record of a
materialization, ``transforms_types`` the type mapping, contract check and partition predicate.
Their public names are importable from here too.
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
from controller.adapters.transforms_catalog import TransformCatalog
from controller.adapters.transforms_record import COMMENT_PREFIX as COMMENT_PREFIX
from controller.adapters.transforms_record import META_CTE as META_CTE
from controller.adapters.transforms_record import (
    build_time,
    is_served,
    resource_from_meta,
    short_digest,
    table_meta,
    versioned_name,
    view_meta,
)
from controller.adapters.transforms_record import parse_meta as parse_meta
from controller.adapters.transforms_types import BACKEND as BACKEND
from controller.adapters.transforms_types import contract_mismatch
from controller.adapters.transforms_types import partition_predicate as _partition_predicate
from controller.adapters.transforms_types import presto_to_hive_type as presto_to_hive_type
from controller.model.errors import PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    presto_string_literal,
    quote_presto,
    split_qualified,
)
from controller.plan.actions import Action, Op
from controller.plan.resources import Resource, ResourceKind, TransformResource
from controller.plan.transforms_model import sha as sql_sha256

log = structlog.get_logger(__name__)

_RUN_KEY = re.compile(r"\A[a-z0-9_]{1,40}\Z")


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


class TransformAdapter(TransformCatalog):
    """SQL transforms of one Presto catalog (the Hive metastore behind it); reading the catalog and
    sending statements comes from ``TransformCatalog``."""

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
        if action.op is Op.REFUSE or action.pending:  # a refusal, or awaiting approval
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
        desired state), so a run never writes a partition with another version's SQL. The SQL it
        executes is read back from the view and hashed afresh (``_checked_run_sql``)."""
        live, meta = self._served(name, expect_digest, expect_sql_digest)
        if live.materialized != "incremental":
            raise PermanentBackendError(
                BACKEND, f"{name} is materialized as {live.materialized}, not incremental"
            )
        relation = str(live.relation)
        columns = self._columns(relation)
        where = _partition_predicate(partition, columns)
        sql = _checked_run_sql(name, meta, expect_sql_digest)
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
        if not _RUN_KEY.fullmatch(run_key):
            raise PermanentBackendError(BACKEND, f"run key {run_key!r} must match [a-z0-9_]{{1,40}}")
        live, meta = self._served(name, expect_digest, expect_sql_digest)
        if live.materialized != "table":
            raise PermanentBackendError(BACKEND, f"{name} is materialized as {live.materialized}, not table")
        table = f"{versioned_name(name, live.digest)}_{run_key}"
        if live.relation == table:
            return RunResult(name, table, live.digest, False, message=f"already served from {table}")
        desired = resource_from_meta(name, meta, relation=None)
        self._ensure_table(desired, table, _checked_run_sql(name, meta, expect_sql_digest))
        self._put_view(desired, table, {**meta, "relation": table, "built_at": build_time()})
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
        meta = view_meta(desired, relation=None)
        if desired.materialized == "view":
            self._put_view(desired, None, meta)
            return True, f"view {desired.name} created from the compiled SQL ({short_digest(desired.digest)})"
        table = versioned_name(desired.name, desired.digest)
        built = self._ensure_table(desired, table, desired.compiled_sql)
        self._put_view(desired, table, view_meta(desired, relation=table))
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
                f"{table} exists but was not built by pipectl at {short_digest(desired.digest)}; "
                "not reusing it",
            )
        if not sql:
            raise PermanentBackendError(BACKEND, f"{desired.name}: no SQL to build {table} from")
        comment = COMMENT_PREFIX + json.dumps(
            table_meta(desired, table), sort_keys=True, separators=(",", ":")
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
        broken = contract_mismatch(desired, self._columns(table))
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
        pattern = re.compile(rf"\A{re.escape(name)}__[0-9a-f]{{8}}(_[a-z0-9_]+)?\Z")
        candidates = sorted(
            t for t, typ in self._tables(db).items() if typ == "BASE TABLE" and pattern.fullmatch(t)
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
                if rel not in live or live[rel][0].digest != u.digest or not is_served(live[rel][0])
            ]
            if not late:
                return
            if self._clock() >= deadline:
                names = ", ".join(f"{u.ref} (want {short_digest(u.digest)})" for u in late)
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
                f"transform {name} is live at {short_digest(live.digest)}, "
                f"not {short_digest(expect_digest)}: the controller has not materialized the current version "
                "yet; not running the old one",
            )
        if expect_sql_digest is not None and live.compiled_sql_digest != expect_sql_digest:
            raise PermanentBackendError(
                BACKEND,
                f"transform {name} was built from SQL {short_digest(live.compiled_sql_digest)}, not "
                f"{short_digest(expect_sql_digest)}: the controller has not materialized the current SQL yet",
            )
        if live.materialized != "view" and not live.relation:
            raise PermanentBackendError(BACKEND, f"transform {name}: the table its view serves is missing")
        return live, meta


def _checked_run_sql(name: str, meta: dict[str, Any], expect_sql_digest: str | None) -> str:
    """The SQL a scheduled run executes — the text recorded in the live view — accepted only when a
    fresh sha256 of that very text is git's digest (``expect_sql_digest``, what ``pipectl transform
    run`` compiled from the repository; without it, the digest recorded beside the text). Whoever
    can replace the view can write any SQL *and* any recorded digest into it; they cannot make
    other SQL hash to git's digest."""
    sql = str(meta.get("sql") or "")
    if not sql:
        raise PermanentBackendError(BACKEND, f"{name}: the live materialization does not record its SQL")
    want = expect_sql_digest or str(meta.get("sql_digest") or "")
    got = sql_sha256(sql)
    if got != want:
        raise PermanentBackendError(
            BACKEND,
            f"transform {name}: the SQL recorded in its live view hashes to {short_digest(got)}, not "
            f"{short_digest(want)} (the SQL compiled from git): the view was changed outside pipectl; "
            "refusing to run it (re-apply the stage to restore the view)",
        )
    return sql
