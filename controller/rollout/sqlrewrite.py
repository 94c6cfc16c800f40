"""Rewrite a gate's SQL from logical table names to one stage's physical tables (sqlglot, Presto).

Gate queries are written once, against logical ``db.table`` names (``telemetry.host_metrics_1m``);
every stage runs them against its own tables (``staging_telemetry.host_metrics_1m``, a canary's
``…__canary`` shadow, a blue/green version's table). ``rewrite_tables`` parses the query with
sqlglot's Presto dialect, swaps each ``exp.Table`` whose ``db.name`` is in the mapping for the
quoted physical name, and prints it back. It refuses, with a ``SqlRefused`` naming the cause:

- anything but exactly one read-only query (a SELECT or a UNION/INTERSECT/EXCEPT of SELECTs);
  a second statement, DDL or DML anywhere in the tree are refused;
- a table reference that is not in the mapping (unqualified names are allowed only when they
  name a CTE of the query), or one that names a catalog (the stage decides the catalog);
- a physical name in the mapping that is not a valid ``db.table`` Hive identifier pair (or a
  ``catalog.db.table`` triple: an Iceberg table is read in Presto's ``iceberg`` catalog, see
  ``GateContext.relation``), so a mapping can never smuggle SQL into the text.

When a table is renamed and the query gave it no alias, the logical table name becomes its alias,
so column references qualified with the table name (``host_metrics_1m.samples``) keep working.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from controller.model import identifiers as ids

DIALECT = "presto"

# Node types that change data or the catalog; none may appear anywhere in a gate's query.
_FORBIDDEN = (
    exp.Insert,
    exp.Delete,
    exp.Update,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.TruncateTable,
    exp.Into,
)


class SqlRefused(ValueError):
    """A gate query pipectl will not run (the message says why)."""


def physical_parts(name: str) -> tuple[str, str]:
    """Split and check a physical ``db.table``; ``SqlRefused`` when it is not two Hive identifiers."""
    try:
        return ids.split_qualified(name)
    except ids.IdentifierError as e:
        raise SqlRefused(f"invalid physical table name in the stage mapping: {e}") from None


def relation_parts(name: str) -> tuple[str | None, str, str]:
    """Split and check a physical ``db.table`` or ``catalog.db.table`` into (catalog or None, db,
    table); ``SqlRefused`` otherwise."""
    catalog: str | None = None
    if name.count(".") == 2:
        catalog, name = name.split(".", 1)
        try:
            ids.check_hive_ident(catalog, "catalog")
        except ids.IdentifierError as e:
            raise SqlRefused(f"invalid catalog in the stage mapping: {e}") from None
    db, table = physical_parts(name)
    return catalog, db, table


def table_node(name: str) -> exp.Table:
    """A checked physical ``[catalog.]db.table`` as a quoted sqlglot table."""
    catalog, db, table = relation_parts(name)
    return exp.Table(
        this=exp.to_identifier(table, quoted=True),
        db=exp.to_identifier(db, quoted=True),
        catalog=exp.to_identifier(catalog, quoted=True) if catalog else None,
    )


def quoted_table(name: str) -> str:
    """``[catalog.]db.table`` → ``["catalog".]"db"."table"`` for Presto, after checking each part."""
    return ".".join(ids.quote_presto(p) for p in relation_parts(name) if p is not None)


def parse_query(sql: str) -> exp.Query:
    """Parse exactly one read-only query; ``SqlRefused`` otherwise."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError as e:
        raise SqlRefused(f"query does not parse as Presto SQL: {_first_line(str(e))}") from None
    if len(statements) != 1:
        raise SqlRefused(f"expected exactly one SELECT statement, got {len(statements)} statements")
    root = statements[0]
    if not isinstance(root, exp.Select | exp.SetOperation):
        raise SqlRefused(f"only a SELECT query may run as a gate, got {root.key.upper()}")
    for node in root.walk():
        if isinstance(node, _FORBIDDEN):
            raise SqlRefused(f"only a read-only SELECT may run as a gate; found {node.key.upper()}")
    return root


def rewrite_tables(sql: str, mapping: Mapping[str, str]) -> str:
    """Return ``sql`` with every logical table replaced by its quoted physical name.

    ``mapping`` is logical ``db.table`` → physical ``db.table``; keys are matched
    case-insensitively, as Presto resolves identifiers.
    """
    lookup = {k.lower(): v for k, v in mapping.items()}
    root = parse_query(sql)
    ctes = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    for table in list(root.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            raise SqlRefused(f"unsupported table expression {table.sql(dialect=DIALECT)!r}")
        name, db, catalog = table.name, table.db, table.catalog
        if catalog:
            raise SqlRefused(
                f"table {table.sql(dialect=DIALECT)} names a catalog; write <database>.<table>, "
                "the stage decides the catalog"
            )
        if not db:
            if name.lower() in ctes:
                continue
            raise SqlRefused(
                f"table {name!r} is not qualified with its database; write <database>.<table> "
                f"(known: {', '.join(sorted(mapping)) or 'none'})"
            )
        logical = f"{db}.{name}".lower()
        if logical not in lookup:
            raise SqlRefused(
                f"table {db}.{name} is not one of this release's tables at the stage "
                f"(known: {', '.join(sorted(mapping)) or 'none'})"
            )
        replacement = table_node(lookup[logical])
        ptable = replacement.name
        alias = table.args.get("alias")
        if alias is not None:
            replacement.set("alias", alias.copy())
        elif ptable != name.lower():
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
        table.replace(replacement)
    return root.sql(dialect=DIALECT)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
