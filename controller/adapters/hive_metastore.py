"""The Hive adapter's bulk reads from the Hive metastore's own Thrift API (issue #17): typed table
objects instead of the text of Spark's ``SHOW TABLE EXTENDED``.

Used when the environment names the metastore (``spec.hive.metastoreUri``): ``HiveAdapter.
observe_scope`` then reads the database list in 1 call (``get_all_databases``) and every table and
view of one database in 2 (``get_all_tables`` + ``get_table_objects_by_name``), whatever the number
of tables. Each is counted in the adapter's ``stats`` under ``hms.<method>``. The methods are those
of the HMS 2.3 IDL (the local stack's metastore is 2.3.9); the bindings are ``pymetastore``'s,
generated from a later IDL whose extra optional fields a 2.3 server leaves unset.

The objects are turned into the same ``TableInfo`` and columns the SQL path parses, so the adapter
builds its resources with the same code: the table's ``parameters`` are filtered as Spark 3.5
filters them before listing "Table Properties" (statistics, ``comment``, ``EXTERNAL`` and Spark's
own ``spark.sql.*`` keys are hidden), columns are ``sd.cols`` then ``partitionKeys`` (GetColumns'
order), the view text is ``viewOriginalText``. Properties are exact here, so the SQL path's
misread of a value containing ``", k=v"`` cannot happen. A Spark datasource table (parameter
``spark.sql.sources.provider`` other than ``hive``) keeps its schema in Spark's own properties,
not in ``sd.cols``: its columns are read with the SQL path's ``GetColumns`` (1 call for all of
them in the database), its location, partition columns and properties as Spark restores them
(the ``path`` storage property, ``spark.sql.sources.schema.partCol.N``, no ``transient_lastDdlTime``).

Transient failures (connection refused or lost, timeouts) become ``TransientBackendError`` and
close the connection, so the adapter's retry opens a new one. The only module of pipectl that
imports ``pymetastore`` (see ``.importlinter``), at the first call: its generated bindings take
~9.5 MiB of the process's memory, which a controller on the SQL path never needs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TException
from thrift.transport import TSocket, TTransport

from controller.adapters.base import CallStats
from controller.adapters.hive_parse import BACKEND, TableInfo, hive_type
from controller.model.errors import BackendError, PermanentBackendError, TransientBackendError
from controller.model.identifiers import parse_metastore_uri
from controller.plan.resources import Column

Key = tuple[str, str]
"""(database, table)."""

# Table parameters Spark 3.5 does not list as "Table Properties" (HiveClientImpl hides statistics,
# the comment and EXTERNAL; HiveExternalCatalog hides its own spark.sql.* keys).
_HIDDEN = frozenset(
    {"COLUMN_STATS_ACCURATE", "numFiles", "numPartitions", "numRows", "rawDataSize", "totalSize"}
    | {"comment", "EXTERNAL"}
)
_SPARK_PREFIX = "spark.sql."
_PROVIDER = "spark.sql.sources.provider"
_SCHEMA = "spark.sql.sources.schema"
_DDL_TIME = "transient_lastDdlTime"  # Spark hides it for datasource tables only

LIST_CHUNK = 200
"""Databases per ``get_table_meta`` (its pattern becomes one condition per database)."""

# MetaException messages that mean "the metastore's own database is unreachable for now".
_TRANSIENT_MARKERS = ("Connection refused", "SocketTimeoutException", "Communications link failure")


def spark_properties(parameters: dict[str, str] | None) -> dict[str, str]:
    """The table parameters Spark lists as its "Table Properties"."""
    return {
        str(k): str(v)
        for k, v in (parameters or {}).items()
        if k not in _HIDDEN and not str(k).startswith(_SPARK_PREFIX)
    }


def is_datasource(table: Any) -> bool:
    """Whether Spark stores this table's schema in its own properties (a ``USING …`` table)."""
    return str((table.parameters or {}).get(_PROVIDER, "hive")).lower() != "hive"


def table_info(table: Any) -> TableInfo:
    """What the SQL path parses from ``SHOW TABLE EXTENDED``, from a metastore ``Table``."""
    sd, params = table.sd, dict(table.parameters or {})
    serde = sd.serdeInfo if sd is not None else None
    location = sd.location if sd is not None else None
    partitions = [str(c.name) for c in table.partitionKeys or []]
    properties = spark_properties(params)
    if is_datasource(table):  # as Spark's HiveExternalCatalog.restoreDataSourceTable reads it back
        location = (serde.parameters or {}).get("path", location) if serde is not None else location
        count = int(params.get(f"{_SCHEMA}.numPartCols", "0"))
        partitions = [params[f"{_SCHEMA}.partCol.{i}"] for i in range(count)]
        properties.pop(_DDL_TIME, None)
    view = str(table.tableType or "").upper() == "VIRTUAL_VIEW"
    return TableInfo(
        type="VIEW" if view else ("EXTERNAL" if table.tableType == "EXTERNAL_TABLE" else "MANAGED"),
        provider=str(params.get(_PROVIDER, "hive")),
        location=location or None,
        serde=str(serde.serializationLib or "") if serde is not None else "",
        input_format=str(sd.inputFormat or "") if sd is not None else "",
        partition_columns=partitions,
        properties=properties,
        view_text=table.viewOriginalText if view else None,
    )


def table_columns(table: Any) -> list[Column]:
    """Data columns then partition columns, types normalized as GetColumns' are. Equal columns
    are one (frozen) object: tables of one family repeat the same names and types, and the
    snapshot holds every table of every database between passes (~540 bytes a column)."""
    cols = list(table.sd.cols or []) if table.sd is not None else []
    cols += list(table.partitionKeys or [])
    return [_column(str(c.name), hive_type(str(c.type))) for c in cols]


_COLUMNS: dict[tuple[str, str], Column] = {}
_COLUMNS_MAX = 50_000


def _column(name: str, type_: str) -> Column:
    found = _COLUMNS.get((name, type_))
    if found is None:
        if len(_COLUMNS) >= _COLUMNS_MAX:  # names that come and go do not pile up
            _COLUMNS.clear()
        found = _COLUMNS[(name, type_)] = Column(name=name, type=type_)
    return found


def database_state(
    tables: Iterable[Any], get_columns: Callable[[set[Key]], dict[Key, list[Column]]]
) -> tuple[dict[Key, TableInfo], dict[Key, list[Column]]]:
    """(``TableInfo`` of every table and view, columns of every table) of one database's objects;
    the columns of datasource tables come from ``get_columns`` (one call, only if there are any)."""
    infos: dict[Key, TableInfo] = {}
    columns: dict[Key, list[Column]] = {}
    datasource: set[Key] = set()
    for t in tables:
        key = (str(t.dbName), str(t.tableName))
        infos[key] = table_info(t)
        if infos[key].type == "VIEW":
            continue
        if is_datasource(t):
            datasource.add(key)
        else:
            columns[key] = table_columns(t)
    if datasource:
        columns.update({k: v for k, v in get_columns(datasource).items() if k in datasource})
    return infos, columns


class LogEvent(NamedTuple):
    """One event of the metastore's notification log (``digest``: of its table and message)."""

    id: int
    type: str
    db: str | None
    digest: str


class MetastoreClient:
    """Up to ``connections`` lazily opened connections to the metastore (plain binary Thrift, as
    HMS 2.3 serves it without SASL, decoded by thrift's C extension when it is installed), each used
    by one call at a time, so a pass's snapshot can read several databases at once; every call is
    counted in ``stats``."""

    def __init__(self, uri: str, stats: CallStats, timeout: float = 120.0, connections: int = 4) -> None:
        self.host, self.port = parse_metastore_uri(uri)
        self.uri = uri
        self.stats = stats
        self.timeout = timeout
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, connections))
        self._idle: list[tuple[Any, Any]] = []
        """(transport, client) of open connections no call is using."""

    def close(self) -> None:
        """Close the idle connections; the next call opens a new one."""
        with self._lock:
            idle, self._idle = self._idle, []
        for transport, _client in idle:
            _close(transport)

    def databases(self) -> list[str]:
        """Every database's name (1 call)."""
        return [str(d) for d in self._call("get_all_databases")]

    def tables(self, db: str, names: Sequence[str] | None = None) -> list[Any]:
        """Every table and view of ``db`` as metastore ``Table`` objects (2 calls; 1 when the
        database is empty or missing: HMS 2.3 lists no table for a missing database). Given
        ``names`` (a ``table_names`` answer) only the objects are read: 1 call, 0 for none."""
        if names is None:
            names = [str(n) for n in self._call("get_all_tables", db)]
        if not names:
            return []
        return list(self._call("get_table_objects_by_name", db, list(names)))

    def table_names(self, dbs: Sequence[str], chunk: int = LIST_CHUNK) -> dict[str, list[str]]:
        """The table and view names of each of ``dbs`` (checked Hive identifiers), with one
        ``get_table_meta`` per ``chunk`` databases: its database pattern is the names joined
        by ``|``, which HMS 2.3 matches as alternatives, each whole."""
        out: dict[str, list[str]] = {db: [] for db in dbs}
        for i in range(0, len(dbs), chunk):
            for meta in self._call("get_table_meta", "|".join(dbs[i : i + chunk]), "*", []):
                found = out.get(str(meta.dbName))
                if found is not None:
                    found.append(str(meta.tableName))
        return out

    def config_value(self, key: str) -> str:
        """A ``hive.*`` setting of the metastore ("" when unset; 1 call)."""
        return str(self._call("get_config_value", key, "") or "")

    def current_event_id(self) -> int:
        """The id of the newest event of the metastore's notification log (1 call)."""
        return int(self._call("get_current_notificationEventId").eventId)

    def events_after(self, last: int, limit: int) -> list[LogEvent]:
        """Up to ``limit`` notification-log events with an id above ``last``, by id (1 call). The
        log is written by ``DbNotificationListener`` in each change's own transaction (the local
        stack configures it); without the listener it stays empty."""
        from pymetastore.hive_metastore.ttypes import NotificationEventRequest

        res = self._call("get_next_notification", NotificationEventRequest(lastEvent=last, maxEvents=limit))
        return [
            LogEvent(
                int(e.eventId), str(e.eventType), str(e.dbName) if e.dbName else None,
                hashlib.sha256(f"{e.tableName}\0{e.message}".encode()).hexdigest()[:16],
            )
            for e in res.events or ()
        ]

    def _connect(self) -> tuple[Any, Any]:
        from pymetastore.hive_metastore import ThriftHiveMetastore

        with self._lock:
            if self._idle:
                return self._idle.pop()
        sock = TSocket.TSocket(self.host, self.port)
        sock.setTimeout(int(self.timeout * 1000))
        transport = TTransport.TBufferedTransport(sock)
        # the C decoder when thrift's extension is built (a pass decodes thousands of fields)
        client = ThriftHiveMetastore.Client(TBinaryProtocol.TBinaryProtocolAccelerated(transport))
        self.stats.count("hms.connect")
        transport.open()
        return transport, client

    def _call(self, method: str, *args: Any) -> Any:
        with self._slots:
            self.stats.count(f"hms.{method}")
            conn: tuple[Any, Any] | None = None
            try:
                conn = self._connect()
                out = getattr(conn[1], method)(*args)
            except Exception as e:  # the bindings raise thrift, socket and metastore errors alike
                if conn is not None:
                    _close(conn[0])  # its state after a failed call is unknown: never reused
                raise self._wrap(e, f"{method}{args!r}"[:200]) from e
            with self._lock:
                self._idle.append(conn)
            return out

    def _wrap(self, e: Exception, call: str) -> BackendError:
        where = f"metastore {self.uri}: {call}"
        if isinstance(e, BackendError):
            return e
        if isinstance(e, TApplicationException) and e.type == TApplicationException.MISSING_RESULT:
            # an exception the 2.3 server declares and the bindings' IDL does not (e.g. the database
            # was dropped between two calls): the retry reads the database again
            self.close()
            return TransientBackendError(BACKEND, f"{where}: {e}")
        message = str(getattr(e, "message", None) or e)
        if isinstance(e, TTransport.TTransportException | OSError) or any(
            m in message for m in _TRANSIENT_MARKERS
        ):
            self.close()  # the connection is unusable; the retry opens a new one
            return TransientBackendError(BACKEND, f"{where}: unreachable: {type(e).__name__}: {message}")
        if isinstance(e, TException):
            return PermanentBackendError(BACKEND, f"{where}: {type(e).__name__}: {message[:800]}")
        return PermanentBackendError(BACKEND, f"{where}: {type(e).__name__}: {e}")


def _close(transport: Any) -> None:
    try:
        transport.close()
    except Exception:  # noqa: S110 - closing a broken connection may fail; nothing to do
        pass


LISTENER = "DbNotificationListener"
LISTENER_KEYS = ("hive.metastore.transactional.event.listeners", "hive.metastore.event.listeners")
_LISTING_EVENTS = frozenset({"CREATE_DATABASE", "DROP_DATABASE", "ALTER_DATABASE"})


class NotificationCursor:
    """What changed in the metastore since the previous look, from its notification log: the
    watch behind the snapshot's ``ScopeWatcher`` (``HiveScopes.changed_scopes``).

    The first call checks that the metastore writes the log (``DbNotificationListener`` in its
    listener settings, read with ``get_config_value``) and takes the newest event id: 2 or 3
    calls, once; it answers "nothing changed" (the watch starts). Each later call reads the
    events from ``overlap`` ids before the newest one seen: 1 call per ``page`` events.

    Why the overlap: HMS 2.3 numbers events without a lock (HIVE-16886), so two concurrent changes
    can get the same id, and the one that commits later appears behind an id already read (seen
    on the local stack: 8 duplicated ids in 1,047 events while a controller created 100
    databases). Events are told apart by id, type, database and a digest of their table and
    message; one seen before is not reported again. Ids are otherwise consecutive (a rolled back
    change rolls its id back too).

    ``changed`` answers None ("unknown: read everything again") when the metastore writes no log,
    when ids it never read are gone (the log's cleaner deleted them: the controller looked too
    late), for an event naming no database, and past ``pages`` pages."""

    def __init__(
        self, client: MetastoreClient, page: int = 1000, pages: int = 10, overlap: int = 100
    ) -> None:
        self.client = client
        self.page = page
        self.pages = pages
        self.overlap = overlap
        self.last: int | None = None
        self.enabled: bool | None = None  # None: not checked yet
        self._seen: dict[LogEvent, int] = {}
        self._lock = threading.Lock()

    def changed(self) -> tuple[set[str], bool] | None:
        """(databases changed since the previous call, whether the database list changed), or None."""
        with self._lock:
            if self.enabled is None:
                self.enabled = any(LISTENER in self.client.config_value(k) for k in LISTENER_KEYS)
            if not self.enabled:
                return None
            if self.last is None:  # the watch starts: nothing read before it needs forgetting
                self.last = self.client.current_event_id()
                return set(), False
            return self._read(self.last)

    def _read(self, last: int) -> tuple[set[str], bool] | None:
        """The events not seen yet; ``last`` and what was seen move only when every page was read
        (a failed call leaves them, so the next call reads those events again)."""
        start, after = last, max(0, last - self.overlap)
        seen: dict[LogEvent, int] = {}
        dbs: set[str] = set()
        listing = unknown = gap_checked = False
        for _ in range(self.pages):
            events = self.client.events_after(after, self.page)
            newer = [ev.id for ev in events if ev.id > start]
            if newer and not gap_checked:  # the first id past the newest one read before
                gap_checked = True
                unknown = unknown or newer[0] > start + 1  # ids never read are gone (the log's cleaner)
            for ev in events:
                if ev in self._seen or ev in seen:
                    continue
                seen[ev] = ev.id
                last = max(last, ev.id)
                if ev.db is None:
                    unknown = True
                    continue
                dbs.add(ev.db.lower())
                listing = listing or ev.type in _LISTING_EVENTS
            if len(events) < self.page:
                break
            after = events[-1].id - 1  # the page's last id again: a duplicate may straddle pages
        else:
            unknown = True
        self._seen.update(seen)
        self._seen = {ev: i for ev, i in self._seen.items() if i > last - self.overlap}
        self.last = last
        return None if unknown else (dbs, listing)
