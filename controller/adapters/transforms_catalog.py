"""What the transform adapter reads from and sends to Presto's catalog: the tables and views of a
database, the view texts holding pipectl's record, a table's columns, partitions and comment, and
the counted, logged statements (``TransformCatalog``, the base of ``TransformAdapter``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import structlog

from controller.adapters.base import CallStats
from controller.adapters.presto import PrestoClient
from controller.adapters.transforms_record import COMMENT_PREFIX, parse_meta, resource_from_meta
from controller.model.errors import BackendError, PermanentBackendError
from controller.model.identifiers import (
    check_hive_ident,
    presto_string_literal,
    quote_presto,
    split_qualified,
)
from controller.plan.resources import TransformResource

# Logs under the transform adapter's name, as it did before it had a module of its own.
log = structlog.get_logger("controller.adapters.transforms")

_COMMENT = re.compile(r"\nCOMMENT '((?:[^']|'')*)'")
_NOT_SUPPORTED = "Hive views are not supported"


class TransformCatalog:
    """Reads of one Presto catalog and the statements sent to it; every call is counted in
    ``stats``. The adapter (``controller.adapters.transforms.TransformAdapter``) sets the attributes."""

    presto: PrestoClient
    stats: CallStats

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
                res = resource_from_meta(full, meta, relation=relation)
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
