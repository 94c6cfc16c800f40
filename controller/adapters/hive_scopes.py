"""Whole-scope reads of the Hive adapter for the pass-wide snapshot (``controller.engine.snapshot``):
the database list, and every table and view of one database, through the Spark Thrift Server or,
with the environment's ``metastore_uri``, the metastore's Thrift API (``hive_metastore``).

``HiveScopes`` is a part of ``HiveAdapter`` (``controller.adapters.hive``), kept in its own room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.adapters._retry import retrying
from controller.adapters.hive_metastore import database_state
from controller.model.identifiers import check_hive_ident, split_qualified
from controller.plan.resources import DatabaseResource, Resource, ResourceKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from controller.adapters.hive_metastore import MetastoreClient, NotificationCursor
    from controller.adapters.hive_parse import TableInfo
    from controller.plan.resources import Column, TableResource, ViewResource

Key = tuple[str, str]


class HiveScopes:
    """``engine.snapshot.ScopedObserver``, ``ScopeLister`` and ``ScopeWatcher`` of ``HiveAdapter``."""

    if TYPE_CHECKING:  # what it uses of HiveAdapter (and its Thrift Server connection)
        metastore: MetastoreClient | None
        events: NotificationCursor | None

        def _query(self, sql: str, op: str) -> list[tuple[Any, ...]]: ...
        def _get_columns(self, tables: Iterable[Key], *, exact: bool = True) -> dict[Key, list[Column]]: ...
        def _show_extended(
            self, tables: set[Key], *, missing_ok: bool = False, every: bool = False
        ) -> dict[Key, TableInfo]: ...
        def _tables_from(
            self, extended: dict[Key, TableInfo], columns: dict[Key, list[Column]]
        ) -> dict[str, TableResource]: ...
        def _views_from(
            self, extended: dict[Key, TableInfo], wanted: set[Key], known: dict[Key, list[Column]]
        ) -> dict[str, ViewResource]: ...

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        """Scopes of ``engine.snapshot``: the database list, and each database's tables and views."""
        if kind is ResourceKind.DATABASE:
            return "databases"
        return f"db:{split_qualified(name)[0]}" if kind in (ResourceKind.TABLE, ResourceKind.VIEW) else None

    @retrying()
    def observe_scope(self, scope: str) -> dict[tuple[ResourceKind, str], Resource]:
        """``databases``: 1 ``SHOW DATABASES``. ``db:<name>``: every table and view of the database
        in 1 ``GetColumns`` + 1 ``SHOW TABLE EXTENDED`` (+ 1 ``GetColumns`` when an all-column view
        reads a table of another database), the same resources ``observe_kinds`` reads one by one.
        With ``metastore_uri``: 1 ``get_all_databases``, and 2 metastore calls per database
        (``hive_metastore``; Iceberg tables still read their columns from the ``iceberg`` catalog)."""
        return self._scope(scope, None)

    def list_scopes(self, scopes: Sequence[str]) -> dict[str, list[str]] | None:
        """With ``metastore_uri``: the table names of every ``db:`` scope in ``scopes``, 1 call per
        200 databases (``engine.snapshot.ScopeLister``); None on the SQL path."""
        if self.metastore is None:
            return None
        dbs = {s: check_hive_ident(s.removeprefix("db:"), "database") for s in scopes if s.startswith("db:")}
        names = self.metastore.table_names(sorted(set(dbs.values()))) if dbs else {}
        return {s: names[db] for s, db in dbs.items()}

    def changed_scopes(self) -> set[str] | None:
        """``engine.snapshot.ScopeWatcher``: the scopes changed since the previous call, from the
        metastore's notification log (``hive_metastore.NotificationCursor``, 1 call; the first
        call starts the watch: 2 or 3 calls, nothing changed); None ("read every scope again") on the
        SQL path or when the log cannot tell."""
        found = self.events.changed() if self.events is not None else None
        if found is None:
            return None
        dbs, listing = found
        return {f"db:{db}" for db in dbs} | ({"databases"} if listing else set())

    @retrying()
    def observe_scope_with(self, scope: str, hint: Any) -> dict[tuple[ResourceKind, str], Resource]:
        """``observe_scope`` of a ``db:`` scope given its table names from ``list_scopes``: 1
        metastore call, none for an empty database."""
        return self._scope(scope, [str(n) for n in hint] if isinstance(hint, list) else None)

    def _scope(self, scope: str, names: list[str] | None) -> dict[tuple[ResourceKind, str], Resource]:
        if scope == "databases":
            if self.metastore is not None:
                names = self.metastore.databases()
            else:
                names = [str(r[0]) for r in self._query("SHOW DATABASES", "show_databases")]
            return {(ResourceKind.DATABASE, n): DatabaseResource(name=n) for n in names}
        db = check_hive_ident(scope.removeprefix("db:"), "database")
        if self.metastore is not None:
            extended, columns = database_state(self.metastore.tables(db, names), self._get_columns)
        else:
            columns = {k: v for k, v in self._get_columns([(db, "%")], exact=False).items() if k[0] == db}
            extended = self._show_extended({(db, "*")}, missing_ok=True, every=True)
        out: dict[tuple[ResourceKind, str], Resource] = {}
        for name, t in self._tables_from(extended, columns).items():
            out[(ResourceKind.TABLE, name)] = t
        views = {k for k, v in extended.items() if v.type == "VIEW"}
        for name, v in self._views_from(extended, views, columns).items():
            out[(ResourceKind.VIEW, name)] = v
        return out
