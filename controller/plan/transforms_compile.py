"""Steps 4 and 5 of compiling a SQL transform for a stage (pure): the compiled SQL, and its output
columns, types and lineage.

**Compile**: placeholders become quoted ``"catalog"."db"."name"``, every identifier is quoted,
comments are dropped; ``sql_digest`` is the sha256 of that text.

**Columns, types and lineage**: qualify and annotate types against the schemas pipectl knows (table
specs, views of them, the outputs of upstream transforms of the release, the declared contracts of
other releases' transforms); column lineage with ``sqlglot.lineage``. An input without a known
schema leaves columns it feeds with type ``unknown``. Output columns need names Presto gives them,
and the partition columns must be the last ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from controller.model.identifiers import HIVE_IDENT_RE, IdentifierError, normalize_hive_type
from controller.model.manifest import Materialization, TransformSpec
from controller.plan.resources import Column
from controller.plan.transforms_model import (
    UNKNOWN_TYPE,
    CompiledTransform,
    Relation,
    materialization_digest,
    sha,
)
from controller.plan.transforms_resolve import Resolver
from controller.plan.transforms_sql import DIALECT, PLACEHOLDER, ParsedSql, SqlProblem, node_line

_LINE = re.compile(r"\.?\s*Line: (\d+), Col: \d+\.?")


def hive_type(dt: exp.DataType | None) -> str:
    """A sqlglot type as a normalized Hive type; ``unknown`` when sqlglot could not infer it."""
    if dt is None or dt.this in {exp.DataType.Type.UNKNOWN, exp.DataType.Type.NULL}:
        return UNKNOWN_TYPE
    text = dt.sql("hive")
    try:
        return normalize_hive_type(text)
    except IdentifierError:
        return text.strip().lower()


def _schema(inputs: Sequence[Relation], catalog: str) -> tuple[MappingSchema, bool]:
    catalogs: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    complete = True
    for rel in inputs:
        if rel.columns is None:
            complete = False
            continue
        db, name = rel.physical.split(".", 1)
        dbs = catalogs.setdefault(rel.catalog or catalog, {})
        dbs.setdefault(db, {})[name] = {c.name: _schema_type(c.type) for c in rel.columns}
    return MappingSchema(dict(catalogs), dialect="hive"), complete


def _schema_type(t: str) -> str:
    return "string" if t == UNKNOWN_TYPE else t


def _substitute(tree: exp.Query, inputs: Mapping[str, Relation], catalog: str | None) -> exp.Query:
    slots = {PLACEHOLDER.format(i): rel for i, rel in enumerate(inputs.values())}

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.db and node.name in slots:
            rel = slots[node.name]
            db, name = rel.physical.split(".", 1)
            reader = rel.catalog or catalog
            node = node.copy()
            node.set("this", exp.to_identifier(name, quoted=True))
            node.set("db", exp.to_identifier(db, quoted=True))
            node.set("catalog", exp.to_identifier(reader, quoted=True) if reader else None)
        return node

    out = tree.transform(swap, copy=True)
    assert isinstance(out, exp.Query)
    return out


def compile_one(
    index: int,
    spec: TransformSpec,
    parsed: ParsedSql,
    resolver: Resolver,
    catalog: str,
    problems: list[SqlProblem],
) -> CompiledTransform | None:
    """Compile one parsed transform for the resolver's stage; None when it has problems (added to
    ``problems``)."""
    assert parsed.tree is not None
    file = parsed.file
    inputs = {r: resolver.resolve(r) for r in parsed.ref_names}
    compiled_tree = _substitute(parsed.tree, inputs, catalog)
    sql = compiled_tree.sql(dialect=DIALECT, identify=True, pretty=True, comments=False)
    sql_digest = sha(sql)
    first_problem = len(problems)

    def problem(line: int, message: str, fld: str = "") -> None:
        problems.append(SqlProblem(file, line, message, index, fld))

    schema, complete = _schema(list(inputs.values()), catalog)
    qualified = _qualify(compiled_tree, parsed.tree, schema, complete, inputs, problem)

    columns: list[Column] = []
    known = False
    flow: dict[str, tuple[tuple[str, str], ...]] = {}
    written = list(compiled_tree.selects)
    starred = any(_is_star(sel) for sel in written)
    if not starred:
        _check_named(written, problem)
    if qualified is not None:
        columns, known = _output_columns(qualified, schema, written, starred, problem)
        if known:
            flow = _lineage(qualified, schema, [c.name for c in columns], inputs)

    _check_partitions(spec, columns, known, problem)
    if len(problems) > first_problem:
        return None

    ref_names = tuple(parsed.ref_names)
    digest = materialization_digest(
        sql_digest, spec.materialized.value, spec.partition_by, [(r, inputs[r].digest) for r in ref_names]
    )
    return CompiledTransform(
        spec=spec,
        index=index,
        name=resolver.name(spec.name),
        sql=sql,
        sql_digest=sql_digest,
        refs=ref_names,
        inputs=tuple(inputs.values()),
        columns=tuple(columns),
        columns_known=known,
        lineage=flow,
        digest=digest,
        depends_on=tuple(inputs[r].physical for r in ref_names if inputs[r].same_release_transform),
    )


def _qualify(
    compiled_tree: exp.Query,
    tree: exp.Query,
    schema: MappingSchema,
    complete: bool,
    inputs: Mapping[str, Relation],
    problem: Callable[..., None],
) -> exp.Query | None:
    """The compiled query with every column qualified; None when sqlglot cannot (reported only when
    every input's schema is known: otherwise columns, types and lineage just stay unknown)."""
    try:
        q = qualify(
            compiled_tree.copy(),
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=complete,
            quote_identifiers=True,
        )
        assert isinstance(q, exp.Query)
        return q
    except OptimizeError as e:
        if complete:
            _column_problem(e, inputs, problem)
    except SqlglotError as e:
        if complete:
            problem(node_line(tree, 1), f"cannot analyse the query: {e}")
    return None


def _check_named(written: Sequence[exp.Expr], problem: Callable[..., None]) -> None:
    """Every output column as written needs a name Presto gives it."""
    for pos, sel in enumerate(written, start=1):
        if not _presto_name(sel):
            problem(
                node_line(sel, 1),
                f"output column {pos} ({sel.sql(DIALECT)}) needs a name: add AS <name>",
            )


def _output_columns(
    qualified: exp.Query,
    schema: MappingSchema,
    written: Sequence[exp.Expr],
    starred: bool,
    problem: Callable[..., None],
) -> tuple[list[Column], bool]:
    """(output columns with their types, whether they are known): unknown when a ``*`` stays
    unexpanded (an input of unknown schema)."""
    typed = annotate_types(qualified, schema=schema, dialect=DIALECT)
    selects = list(typed.selects)
    known = not any(_is_star(sel) for sel in selects) and (starred or len(selects) == len(written))
    columns: list[Column] = []
    seen: set[str] = set()
    for pos, sel in enumerate(selects if known else []):
        # names as Presto gives them (qualify aliases every expression; Presto does not)
        name = _presto_name(sel if starred else written[pos]).lower()
        if not name:
            continue
        if not HIVE_IDENT_RE.fullmatch(name):
            problem(
                node_line(sel, 1),
                f"output column {name!r} is not a valid column name ([a-z_][a-z0-9_]*)",
            )
        if name in seen:
            problem(node_line(sel, 1), f"output column {name!r} appears more than once")
        seen.add(name)
        columns.append(Column(name=name, type=hive_type(sel.type)))
    return columns, known


def _column_problem(e: OptimizeError, inputs: Mapping[str, Relation], problem: Callable[..., None]) -> None:
    m = _LINE.search(str(e))
    text = _LINE.sub("", str(e)).strip().rstrip(".")
    refs = ", ".join(f"ref('{r}')" for r in inputs)
    if text.startswith("Column ") and "could not be resolved" in text:
        col = text.split("'")[1] if "'" in text else text
        text = f"unknown column {col!r}: no input has it ({refs or 'no refs'})"
    problem(int(m.group(1)) if m else 1, text)


def _is_star(sel: exp.Expr) -> bool:
    return isinstance(sel, exp.Star) or (isinstance(sel, exp.Column) and isinstance(sel.this, exp.Star))


def _presto_name(sel: exp.Expr) -> str:
    """Presto names an output column by its alias or as the column it selects; others are unnamed."""
    if isinstance(sel, exp.Alias):
        return sel.alias
    return sel.name if isinstance(sel, exp.Column) else ""


def _check_partitions(
    spec: TransformSpec, columns: list[Column], known: bool, problem: Callable[..., None]
) -> None:
    if spec.materialized is Materialization.INCREMENTAL and not spec.partition_by:
        problem(
            0, "materialized: incremental needs partitionBy (the partitions a run overwrites)", "materialized"
        )
    if not spec.partition_by or not known:
        return
    names = [c.name for c in columns]
    missing = [p for p in spec.partition_by if p not in names]
    if missing:
        problem(
            0, f"partition column(s) {', '.join(missing)} are not output columns of the SQL", "partitionBy"
        )
    elif names[-(n := len(spec.partition_by)) :] != list(spec.partition_by):
        problem(
            0,
            f"partition column(s) {', '.join(spec.partition_by)} must be the last output columns, in that "
            f"order (Presto writes partition columns last); the SQL ends with {', '.join(names[-n:])}",
            "partitionBy",
        )


def _lineage(
    qualified: exp.Query, schema: MappingSchema, columns: Sequence[str], inputs: Mapping[str, Relation]
) -> dict[str, tuple[tuple[str, str], ...]]:
    """Output column → the (physical relation, column) pairs it is computed from."""
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    nodes: dict[str, Node] = {}
    try:
        res = lineage(None, qualified, schema=schema, dialect=DIALECT)
        nodes = res if isinstance(res, dict) else {columns[0]: res} if columns else {}
    except SqlglotError:
        for c in columns:
            try:
                one = lineage(c, qualified, schema=schema, dialect=DIALECT)
                if isinstance(one, Node):
                    nodes[c] = one
            except SqlglotError:
                continue
    physical = {r.physical for r in inputs.values()}
    for col, node in nodes.items():
        pairs: set[tuple[str, str]] = set()
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.expression, exp.Table):
                continue
            rel = f"{leaf.expression.db}.{leaf.expression.name}"
            if rel not in physical:
                continue
            src = exp.to_column(leaf.name, dialect=DIALECT).name if leaf.name else ""
            if src:
                pairs.add((rel, src))
        out[col.lower()] = tuple(sorted(pairs))
    return out
