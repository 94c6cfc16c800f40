"""Iceberg snapshots as the data side of an audit record, and queries as of a recorded run.

- ``iceberg_tables``: the physical names of a release's ``format: iceberg`` tables at a stage.
- ``read_snapshots``: each one's current snapshot id and commit time after the run's actions, in
  one statement over the ``iceberg`` catalog's snapshots/history metadata tables: on the stage's
  Thrift Server when the reader is the Hive adapter (the engine's audit records), else on Presto
  (SQL in ``controller/adapters/hive_iceberg.py``). A failed read never fails the run: the record
  then says, per table, why it has no id.
- ``pin_query``: a read-only query rewritten so that each table it reads is the recorded snapshot
  of that table (Presto 0.287's Iceberg time travel ``"table@<snapshot id>"``), via sqlglot's
  Presto dialect. Anything but one query (SELECT, UNION, WITH …) is refused, and so is a table the
  run did not record: an answer is either as of the run or not given.
- ``query_as_of``: the record's query run on Presto (``pipectl audit show RUN --query``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import sqlglot
import structlog
from sqlglot import exp

from controller.adapters import hive_iceberg as ice
from controller.audit.ledger import TableSnapshot
from controller.model.errors import PipectlError, TransientBackendError
from controller.model.manifest import PipelineRelease, TableFormat
from controller.plan.desired import StageContext, physical_table

log = structlog.get_logger(__name__)


class SqlReader(Protocol):
    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]: ...


@runtime_checkable
class SnapshotPort(Protocol):
    """Reads tables' current snapshots (``HiveAdapter.current_snapshots``, on the Thrift Server)."""

    def current_snapshots(self, tables: Sequence[str]) -> dict[str, tuple[str, str]]: ...


class PrestoSnapshots:
    """``SnapshotPort`` over Presto's ``iceberg`` catalog (``snapshots_sql``)."""

    def __init__(self, sql: SqlReader) -> None:
        self.sql = sql

    def current_snapshots(self, tables: Sequence[str]) -> dict[str, tuple[str, str]]:
        return ice.parse_snapshots(self.sql.query(ice.snapshots_sql(tables), op="iceberg_snapshots"))


def snapshot_port(reader: SqlReader | SnapshotPort) -> SnapshotPort:
    """``reader`` itself when it reads snapshots, else Presto's metadata tables through it."""
    return reader if isinstance(reader, SnapshotPort) else PrestoSnapshots(reader)


class AsOfError(PipectlError):
    """The query cannot be answered as of the run (not a query, or an unrecorded table)."""


def iceberg_tables(rel: PipelineRelease, ctx: StageContext) -> list[str]:
    """Physical ``db.table`` of each ``format: iceberg`` table of ``rel`` at ``ctx``'s stage."""
    return [
        physical_table(ctx, rel, t.name, rel.spec.version)
        for t in rel.spec.tables
        if t.format is TableFormat.ICEBERG
    ]


def snapshots_at(
    rel: PipelineRelease, ctx: StageContext, reader_at: Callable[[StageContext], SqlReader | SnapshotPort]
) -> list[TableSnapshot]:
    """``read_snapshots`` of ``rel``'s Iceberg tables at ``ctx``'s stage, through that stage's
    reader (``reader_at``, not called when the release has no Iceberg table)."""
    tables = iceberg_tables(rel, ctx)
    if not tables:
        return []
    try:
        reader = reader_at(ctx)
    except Exception as e:
        return [TableSnapshot(table=t, error=f"{type(e).__name__}: {e}"[:500]) for t in tables]
    return read_snapshots(reader, tables)


MAX_ONE_BY_ONE = 8
"""At most this many tables are read one by one after the batched read failed: the record is
written on every run, so a broken read must not cost one Presto round trip per table."""


def read_snapshots(reader: SqlReader | SnapshotPort, tables: Sequence[str]) -> list[TableSnapshot]:
    """The current snapshot of each table, in one statement; if that fails for one table (missing
    after a failed create), each table alone (at most ``MAX_ONE_BY_ONE``), so one bad table does
    not hide the others. A transient failure (a backend down) is not retried table by table."""
    if not tables:
        return []
    port = snapshot_port(reader)
    try:
        found = port.current_snapshots(tables)
        return [_snapshot(t, found.get(t)) for t in tables]
    except Exception as e:
        batch_error = f"{type(e).__name__}: {e}"[:500]
        if isinstance(e, TransientBackendError):
            return [TableSnapshot(table=t, error=batch_error) for t in tables]
        log.warning("iceberg snapshots: batched read failed, reading each table", error=str(e))
    out = []
    for i, t in enumerate(tables):
        if i >= MAX_ONE_BY_ONE:
            out.append(TableSnapshot(table=t, error=f"not read (batched read failed: {batch_error})"[:500]))
            continue
        try:
            one = port.current_snapshots([t])
            out.append(_snapshot(t, one.get(t)))
        except Exception as e:
            out.append(TableSnapshot(table=t, error=f"{type(e).__name__}: {e}"[:500]))
    return out


def _snapshot(table: str, found: tuple[str, str] | None) -> TableSnapshot:
    if found is None:
        return TableSnapshot(table=table)
    return TableSnapshot(table=table, snapshot_id=found[0], committed_at=found[1])


def pin_query(sql: str, snapshots: Sequence[Mapping[str, Any]], catalog: str = ice.ICEBERG_CATALOG) -> str:
    """``sql`` (Presto) with every table reference replaced by its recorded snapshot:
    ``db.t``, ``iceberg.db.t`` (or ``hive.db.t``) → ``iceberg.db."t@<id>"``. Refuses (``AsOfError``)
    a statement that is not one query, a table not in ``snapshots``, and a recorded table that had
    no snapshot in that run."""
    try:
        statements = sqlglot.parse(sql, read="presto")
    except sqlglot.errors.ParseError as e:
        raise AsOfError(f"cannot parse the query: {e}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise AsOfError("only one read-only query (SELECT, WITH … SELECT, UNION) can run as of a run")
    tree = statements[0]
    pins = {str(s["table"]).lower(): s for s in snapshots}
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for t in list(tree.find_all(exp.Table)):
        if not t.args.get("db") and t.name.lower() in ctes:
            continue
        name = f"{t.db}.{t.name}".lower()
        if name not in pins:
            recorded = ", ".join(sorted(pins)) or "none"
            raise AsOfError(f"{t.sql(dialect='presto')}: not an Iceberg table recorded in this run "
                            f"(recorded: {recorded})")
        snap = pins[name]
        if not snap.get("snapshot_id"):
            why = snap.get("error") or "the table had no snapshot (no data) then"
            raise AsOfError(f"{name}: no snapshot recorded in this run ({why})")
        pinned = exp.to_identifier(f"{t.name}@{int(str(snap['snapshot_id']))}", quoted=True)
        t.set("this", pinned)
        t.set("db", exp.to_identifier(t.db, quoted=True))
        t.set("catalog", exp.to_identifier(catalog, quoted=True))
    return tree.sql(dialect="presto")


def query_as_of(
    sql_port: SqlReader, record: Mapping[str, Any], sql: str
) -> tuple[str, list[tuple[Any, ...]]]:
    """(the pinned statement, its rows) for ``sql`` as of the run of ``record``."""
    pinned = pin_query(sql, record.get("snapshots") or [])
    return pinned, sql_port.query(pinned, op="audit_as_of")
