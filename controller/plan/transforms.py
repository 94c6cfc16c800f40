"""SQL transforms compiled per stage (pure): dbt-like models that read their inputs through
``{{ ref('db.name') }}``.

For one release at one stage, ``compile_release`` runs these steps for every transform:

1. **Template.** The only template form is ``{{ ref('db.name') }}``; any other ``{{ … }}``,
   ``{% … %}`` or ``{# … #}`` is an error. Each ref is replaced by a placeholder table (newlines
   kept), so the SQL parses and every line number is the SQL file's own.
2. **Parse** with sqlglot, dialect presto. A syntax error carries the file's line. A transform is
   one query (SELECT, UNION, WITH …). A table named without ``ref()`` is an undeclared dependency
   and an error (CTE names are not tables).
3. **Resolve** each ref to what is *served* at the stage:

   - a transform → its name at the stage (``<prefix>db.name``: every materialization is served
     under that name, see ``controller.adapters.transforms``);
   - a view → the view;
   - a table that a view of its release serves (``telemetry.host_metrics`` serves
     ``telemetry.host_metrics_1m`` in the example) → that serving view: the transform reads what
     dashboards read, and a blue/green switch repoints the view without changing the compiled SQL;
   - any other table → its physical table for the serving version (``…__v1_0_0`` when a
     blue/green or canary job writes it, else the table itself).

   Each input carries a digest of what it serves: the served physical table and the version of the
   release that writes it (an upstream transform: its own materialization digest). A new upstream
   version therefore changes the transform's digest although its SQL did not change.
4. **Compile**: placeholders become quoted ``"catalog"."db"."name"``, every identifier is quoted,
   comments are dropped; ``sql_digest`` is the sha256 of that text.
5. **Columns, types and lineage**: qualify and annotate types against the schemas pipectl knows
   (table specs, views of them, the outputs of upstream transforms of the release, the declared
   contracts of other releases' transforms); column lineage with ``sqlglot.lineage``. An input
   without a known schema leaves columns it feeds with type ``unknown``.
6. **Contracts**: declared columns and types against the compiled output. A break names the
   transform whose contract breaks and the upstream column the broken column now comes from, and is
   recorded on that transform and on every upstream transform of the release it comes from, so the
   plan refuses both (``Reason.CONTRACT_BROKEN`` in ``controller.plan.rules.transform``).
7. **Order**: a transform depends on its refs; refs between transforms of the release order them
   topologically (``depends_on``); a cycle is an error that names it.

The materialization ``digest`` of a transform is the sha256 of its compiled SQL digest, its
materialization, its partition columns and the digests of its inputs: equal digests mean "nothing
to re-run" (dbt's ``state:modified+``: an upstream change propagates to everything downstream).

Canary stages have no transforms (``controller.plan.desired``): a canary runs in its target's
namespace, where a transform of the same name is the target's own.

Problems (template, syntax, undeclared tables, unknown refs or columns, cycles, partition columns)
raise ``TransformError`` with every ``SqlProblem`` found; ``check_release`` returns them for
``pipectl validate`` instead. A broken contract is not a problem of the manifest: the plan refuses it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from controller.model.errors import PipectlError
from controller.model.identifiers import HIVE_IDENT_RE, IdentifierError, normalize_hive_type
from controller.model.manifest import Materialization, PipelineRelease, TransformSpec
from controller.plan.actions import Action
from controller.plan.desired import (
    StageContext,
    physical_table,
    table_name,
    versioned_tables,
    vtag,
)
from controller.plan.resources import (
    Column,
    Owner,
    ResourceKind,
    TransformInput,
    TransformResource,
    ViewSegment,
)

Reader = Callable[[str], bytes]

DIALECT = "presto"
UNKNOWN_TYPE = "unknown"

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_REF = re.compile(r"\{\{\s*ref\(\s*(?:'([^'\\\n]*)'|\"([^\"\\\n]*)\")\s*\)\s*\}\}")
_OPEN = re.compile(r"\{\{|\{%|\{#")
_PLACEHOLDER = "__pipectl_ref_{}"
_PLACEHOLDER_RE = re.compile(r"^__pipectl_ref_(\d+)$")
_BAD = "__pipectl_template__"  # stands for a template expression that is reported already
_LINE = re.compile(r"\.?\s*Line: (\d+), Col: \d+\.?")


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SqlProblem:
    """A problem of one transform: in its SQL file (``file:line``) or, with ``field``, in the
    manifest field ``spec.transforms[transform].<field>``."""

    file: str
    line: int
    message: str
    transform: int = 0
    field: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class TransformError(PipectlError):
    """A release's transforms cannot be compiled; carries every problem found."""

    def __init__(self, problems: Sequence[SqlProblem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- step 1 and 2: template and parse (stage independent) -------------------------------------


@dataclass(frozen=True)
class RefSite:
    name: str
    line: int


@dataclass
class ParsedSql:
    """One SQL file: its refs (in order of appearance) and its tree with placeholder tables."""

    file: str
    refs: list[RefSite] = field(default_factory=list)
    tree: exp.Query | None = None
    problems: list[SqlProblem] = field(default_factory=list)

    @property
    def ref_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.refs:
            seen.setdefault(r.name)
        return list(seen)


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, max(0, min(pos, len(text)))) + 1


def parse_sql(text: str, file: str, transform: int = 0) -> ParsedSql:
    """Template and syntax checks of one transform's SQL; never raises."""
    out = ParsedSql(file=file)

    def problem(line: int, message: str) -> None:
        out.problems.append(SqlProblem(file, line, message, transform))

    slots: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        pieces.append(text[pos : m.start()])
        pos = m.end()
        line = _line_at(text, m.start())
        ref = _REF.fullmatch(m.group(0))
        newlines = "\n" * m.group(0).count("\n")
        if ref is None:
            shown = " ".join(m.group(0).split())
            problem(
                line, f"unsupported template expression {shown}: only {{{{ ref('db.name') }}}} is allowed"
            )
            pieces.append(f'"{_BAD}"' + newlines)
            continue
        name = ref.group(1) if ref.group(1) is not None else ref.group(2)
        if not _is_qualified(name):
            problem(line, f"ref({name!r}): expected 'db.name' (lower-case identifiers)")
            pieces.append(f'"{_BAD}"' + newlines)
            continue
        slot = slots.setdefault(name, len(slots))
        out.refs.append(RefSite(name, line))
        pieces.append(f'"{_PLACEHOLDER.format(slot)}"' + newlines)
    pieces.append(text[pos:])
    sql = "".join(pieces)
    leftover = _OPEN.search(sql)
    if leftover:
        problem(_line_at(sql, leftover.start()), "unclosed template expression")
        return out

    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        line = int(first.get("line") or 1)
        desc = _friendly(str(first.get("description") or e).split("\n")[0])
        near = str(first.get("highlight") or "").strip()
        problem(line, f"SQL syntax error: {desc}" + (f" (near {near!r})" if near else ""))
        return out
    except TokenError as e:
        start = getattr(e, "start", None)
        end = getattr(e, "end", None)
        at = (start + 50 if start else end) if (start is not None or end is not None) else 0
        problem(_line_at(sql, at or 0), "SQL syntax error: unterminated string, identifier or comment")
        return out
    if not statements:
        problem(1, "the SQL file holds no query")
        return out
    if len(statements) > 1:
        problem(_node_line(statements[1], 1), "a transform is one query; found more than one statement")
        return out
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        problem(_node_line(tree, 1), f"a transform is a query (SELECT …), not {tree.key.upper()}")
        return out

    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for tb in tree.find_all(exp.Table):
        name = tb.name
        if not name or not isinstance(tb.this, exp.Identifier):
            continue
        if (_PLACEHOLDER_RE.match(name) or name == _BAD) and not tb.db:
            continue
        if not tb.db and not tb.catalog and name.lower() in ctes:
            continue
        shown = ".".join(p for p in (tb.catalog, tb.db, name) if p)
        hint = f"{{{{ ref('{tb.db}.{name}') }}}}" if tb.db and not tb.catalog else "{{ ref('db.name') }}"
        problem(
            _node_line(tb, 1),
            f"table {shown} is referenced without ref() (undeclared dependency): write {hint}",
        )
    if not out.problems:
        out.tree = tree
    return out


_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")


def _friendly(desc: str) -> str:
    """sqlglot's "Required keyword: 'this' missing for <class '…Where'>" → "incomplete WHERE"."""
    m = _MISSING.search(desc)
    return f"incomplete {m.group(1).upper()}" if m else desc


def _is_qualified(name: str) -> bool:
    db, dot, table = name.partition(".")
    return bool(dot) and bool(HIVE_IDENT_RE.match(db)) and bool(HIVE_IDENT_RE.match(table))


def _node_line(node: exp.Expr, default: int) -> int:
    for n in node.walk():
        meta = getattr(n, "meta", None) if isinstance(n, exp.Expr) else None
        if meta and "line" in meta:
            return int(meta["line"])
    return default


# --- step 3: what a ref resolves to ------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    """What ``ref(logical)`` reads at a stage."""

    logical: str
    physical: str
    kind: Literal["table", "view", "transform", "external"]
    digest: str
    label: str
    columns: tuple[Column, ...] | None = None
    same_release_transform: bool = False


class _Resolver:
    """Resolves refs for one release at one stage (``ctx`` None: logical names, for validation)."""

    def __init__(
        self,
        release: PipelineRelease,
        upstream: Sequence[PipelineRelease],
        ctx: StageContext | None,
        serving_version: str | None,
        view_segments: Mapping[str, Sequence[ViewSegment]],
    ) -> None:
        self.release = release
        self.ctx = ctx
        self.serving_version = serving_version
        self.view_segments = view_segments
        self.entries: dict[str, tuple[str, PipelineRelease]] = {}
        deps = [u for u in upstream if u.name in release.spec.depends_on and u.name != release.name]
        for rel in [release, *deps]:  # the release's own names win
            for t in rel.spec.tables:
                self.entries.setdefault(t.name, ("table", rel))
            for v in rel.spec.views:
                self.entries.setdefault(v.name, ("view", rel))
            for x in rel.spec.transforms:
                self.entries.setdefault(x.name, ("transform", rel))
        # Compiling for a stage without the dependsOn releases' specs: a ref that is not the
        # release's own may be theirs; it resolves by name (schema unknown) instead of failing.
        missing = set(release.spec.depends_on) - {u.name for u in deps} - {release.name}
        self.lenient = ctx is not None and bool(missing)
        # Filled in topological order while compiling: outputs and digests of own transforms.
        self.compiled: dict[str, CompiledTransform] = {}

    def name(self, logical: str) -> str:
        return table_name(self.ctx, logical) if self.ctx else logical

    def _version(self, owner: PipelineRelease) -> str:
        if owner.name == self.release.name and self.serving_version:
            return self.serving_version
        return owner.spec.version

    def _physical(self, owner: PipelineRelease, table: str) -> str:
        return physical_table(self.ctx, owner, table, self._version(owner)) if self.ctx else table

    def known(self, logical: str) -> bool:
        return logical in self.entries or self.lenient

    def is_own_transform(self, logical: str) -> bool:
        what, owner = self.entries.get(logical, ("", self.release))
        return what == "transform" and owner.name == self.release.name

    def columns_of(self, logical: str) -> tuple[Column, ...] | None:
        what, owner = self.entries[logical]
        if what == "table":
            t = next(t for t in owner.spec.tables if t.name == logical)
            return tuple(Column(name=c.name, type=c.type) for c in [*t.columns, *t.partitioned_by])
        if what == "view":
            v = next(v for v in owner.spec.views if v.name == logical)
            return self.columns_of(v.table) if v.table in self.entries and v.table != logical else None
        if owner.name == self.release.name:
            done = self.compiled.get(logical)
            if done is None or not done.columns_known:
                return None
            return done.columns
        spec = next(x for x in owner.spec.transforms if x.name == logical)
        return tuple(Column(name=c.name, type=c.type) for c in spec.columns) if spec.columns else None

    def _served(self, owner: PipelineRelease, logical: str) -> tuple[str, str, str]:
        """(served physical relation, digest, label) of a table or transform of ``owner``."""
        what, _ = self.entries.get(logical, ("table", owner))
        version = self._version(owner)
        if what == "transform":
            done = self.compiled.get(logical) if owner.name == self.release.name else None
            if done is not None:
                return done.name, done.digest, short(done.digest)
            return self.name(logical), f"{self.name(logical)}@{version}", version
        served = self._physical(owner, logical)
        label = vtag(version) if logical in versioned_tables(owner) else version
        return served, f"{served}@{version}", label

    def resolve(self, logical: str) -> Relation:
        if logical not in self.entries:  # lenient: a relation of a dependsOn release not supplied
            name = self.name(logical)
            return Relation(logical, name, "external", f"{name}@unknown", "unknown")
        what, owner = self.entries[logical]
        own = owner.name == self.release.name
        if what == "transform":
            served, digest, label = self._served(owner, logical)
            kind: Literal["transform", "external"] = "transform" if own else "external"
            return Relation(logical, served, kind, digest, label, self.columns_of(logical), own)
        if what == "view":
            spec = next(v for v in owner.spec.views if v.name == logical)
            _, digest, label = self._served(owner, spec.table)
            digest += self._segments(owner, spec.name)
            return Relation(logical, self.name(logical), "view", digest, label, self.columns_of(logical))
        served, digest, label = self._served(owner, logical)
        serving = next((v for v in owner.spec.views if v.table == logical), None)
        relation = served
        if serving is not None and not (self.ctx and self.ctx.is_canary):
            relation = self.name(serving.name)
            digest += self._segments(owner, serving.name)
        return Relation(logical, relation, "table", digest, label, self.columns_of(logical))

    def _segments(self, owner: PipelineRelease, view: str) -> str:
        if owner.name != self.release.name or not self.view_segments.get(view):
            return ""
        return " segments:" + ",".join(f"{s.table}>={s.since or ''}" for s in self.view_segments[view])


# --- steps 4 to 6: compile one transform ------------------------------------------------------


@dataclass(frozen=True)
class CompiledTransform:
    """One transform compiled for one stage."""

    spec: TransformSpec
    index: int
    name: str
    sql: str
    sql_digest: str
    refs: tuple[str, ...]
    inputs: tuple[Relation, ...]
    columns: tuple[Column, ...]
    columns_known: bool
    lineage: Mapping[str, tuple[tuple[str, str], ...]]
    digest: str
    depends_on: tuple[str, ...]
    contract_breaks: tuple[str, ...] = ()

    def lineage_columns(self) -> dict[str, list[str]]:
        """``hive:<db.name>.<column>`` → the input columns it is computed from (audit format)."""
        return {
            f"hive:{self.name}.{col}": sorted({f"hive:{rel}.{c}" for rel, c in srcs})
            for col, srcs in self.lineage.items()
        }


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def short(d: str) -> str:
    """``sha256:<12 hex>``: enough to tell materializations apart in a plan."""
    algo, sep, hexpart = d.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else d[:12]


def materialization_digest(
    sql_digest: str, materialized: str, partition_by: Sequence[str], inputs: Sequence[tuple[str, str]]
) -> str:
    """The identity of a materialization: equal digests, nothing to re-run."""
    payload = {
        "sql": sql_digest,
        "materialized": materialized,
        "partition_by": list(partition_by),
        "inputs": sorted([list(i) for i in inputs]),
    }
    return sha(json.dumps(payload, sort_keys=True, separators=(",", ":")))


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
    dbs: dict[str, dict[str, dict[str, str]]] = {}
    complete = True
    for rel in inputs:
        if rel.columns is None:
            complete = False
            continue
        db, name = rel.physical.split(".", 1)
        dbs.setdefault(db, {})[name] = {c.name: _schema_type(c.type) for c in rel.columns}
    tables: dict[str, object] = {catalog: dbs} if dbs else {}
    return MappingSchema(tables, dialect="hive"), complete


def _schema_type(t: str) -> str:
    return "string" if t == UNKNOWN_TYPE else t


def _substitute(tree: exp.Query, inputs: Mapping[str, Relation], catalog: str | None) -> exp.Query:
    slots = {_PLACEHOLDER.format(i): rel for i, rel in enumerate(inputs.values())}

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.db and node.name in slots:
            db, name = slots[node.name].physical.split(".", 1)
            node = node.copy()
            node.set("this", exp.to_identifier(name, quoted=True))
            node.set("db", exp.to_identifier(db, quoted=True))
            node.set("catalog", exp.to_identifier(catalog, quoted=True) if catalog else None)
        return node

    out = tree.transform(swap, copy=True)
    assert isinstance(out, exp.Query)
    return out


def _compile_one(
    index: int,
    spec: TransformSpec,
    parsed: ParsedSql,
    resolver: _Resolver,
    catalog: str,
    problems: list[SqlProblem],
) -> CompiledTransform | None:
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
    qualified: exp.Query | None = None
    try:
        q = qualify(
            compiled_tree.copy(),
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=complete,
            quote_identifiers=True,
        )
        assert isinstance(q, exp.Query)
        qualified = q
    except OptimizeError as e:
        # With an input of unknown schema, columns, types and lineage just stay unknown.
        if complete:
            _column_problem(e, inputs, problem)
    except SqlglotError as e:
        if complete:
            problem(_node_line(parsed.tree, 1), f"cannot analyse the query: {e}")

    columns: list[Column] = []
    known = False
    flow: dict[str, tuple[tuple[str, str], ...]] = {}
    written = list(compiled_tree.selects)
    starred = any(_is_star(sel) for sel in written)
    if not starred:
        for pos, sel in enumerate(written, start=1):
            if not _presto_name(sel):
                problem(
                    _node_line(sel, 1),
                    f"output column {pos} ({sel.sql(DIALECT)}) needs a name: add AS <name>",
                )
    if qualified is not None:
        typed = annotate_types(qualified, schema=schema, dialect=DIALECT)
        selects = list(typed.selects)
        known = not any(_is_star(sel) for sel in selects) and (starred or len(selects) == len(written))
        seen: set[str] = set()
        for pos, sel in enumerate(selects if known else []):
            # names as Presto gives them (qualify aliases every expression; Presto does not)
            name = _presto_name(sel if starred else written[pos]).lower()
            if not name:
                continue
            if not HIVE_IDENT_RE.match(name):
                problem(
                    _node_line(sel, 1),
                    f"output column {name!r} is not a valid column name ([a-z_][a-z0-9_]*)",
                )
            if name in seen:
                problem(_node_line(sel, 1), f"output column {name!r} appears more than once")
            seen.add(name)
            columns.append(Column(name=name, type=hive_type(sel.type)))
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


def _contract_breaks(ct: CompiledTransform) -> list[tuple[str, set[str]]]:
    """(message, upstream physical relations it comes from) for each break of ``ct``'s contract."""
    if ct.spec.columns is None:
        return []
    logical = ct.spec.name
    declared = {c.name: c.type for c in ct.spec.columns}
    got = {c.name: c.type for c in ct.columns}
    out: list[tuple[str, set[str]]] = []
    if not ct.columns_known:
        return out  # SELECT * over an input of unknown schema: checked by the engine when built
    by_physical = {r.physical: r.logical for r in ct.inputs}

    def origin(col: str) -> tuple[str, set[str]]:
        srcs = ct.lineage.get(col, ())
        if not srcs:
            return "", set()
        shown = ", ".join(f"{by_physical.get(rel, rel)}.{c}" for rel, c in srcs)
        return f" (computed from upstream {shown})", {rel for rel, _ in srcs}

    for name, typ in declared.items():
        if name not in got:
            out.append(
                (
                    f"column {name} is declared in the contract of {logical} but the SQL does not produce it",
                    set(),
                )
            )
        elif got[name] != UNKNOWN_TYPE and got[name] != typ:
            where, rels = origin(name)
            out.append(
                (
                    f"column {name} is declared {typ} in the contract of {logical} but the compiled SQL "
                    f"yields {got[name]}{where}",
                    rels,
                )
            )
    for name in got:
        if name not in declared:
            where, rels = origin(name)
            out.append(
                (f"column {name} is produced by {logical} but not declared in its contract{where}", rels)
            )
    return out


# --- step 7 and the release as a whole --------------------------------------------------------


def topological_order(edges: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Nodes ordered dependencies first (deterministic: depth first, by name) and the cycles found
    (each as ``[a, b, a]``)."""
    nodes = sorted(edges)
    cycles: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = dict.fromkeys(nodes, 0)
    order: list[str] = []
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(set(edges.get(n, ()))):
            if d not in state:
                continue
            if state[d] == 1:
                cycle = [*stack[stack.index(d) :], d]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    cycles.append(cycle)
            elif state[d] == 0:
                visit(d)
        stack.pop()
        state[n] = 2
        order.append(n)

    for n in nodes:
        if state[n] == 0:
            visit(n)
    return order, cycles


def compile_release(
    release: PipelineRelease,
    read: Reader,
    ctx: StageContext | None = None,
    *,
    upstream: Sequence[PipelineRelease] = (),
    serving_version: str | None = None,
    view_segments: Mapping[str, Sequence[ViewSegment]] | None = None,
) -> list[CompiledTransform]:
    """Compile every transform of ``release`` for the stage ``ctx`` (None: logical names, for
    validation), dependencies first. ``upstream``: the releases named in ``dependsOn`` (their
    tables, views and transforms may be refs). Raises ``TransformError`` with every problem."""
    spec = release.spec
    problems: list[SqlProblem] = []
    parsed: dict[str, ParsedSql] = {}
    for i, t in enumerate(spec.transforms):
        try:
            text = read(t.sql).decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(SqlProblem(t.sql, 1, f"not UTF-8: {e.reason}", i))
            continue
        except OSError as e:
            problems.append(SqlProblem(t.sql, 0, f"cannot read the SQL file: {e.strerror or e}", i, "sql"))
            continue
        p = parse_sql(text, t.sql, i)
        problems += p.problems
        parsed[t.name] = p

    resolver = _Resolver(release, upstream, ctx, serving_version, view_segments or {})
    edges: dict[str, list[str]] = {}
    for i, t in enumerate(spec.transforms):
        found = parsed.get(t.name)
        if found is None:
            continue
        p = found
        edges[t.name] = []
        for site in p.refs:
            if not resolver.known(site.name):
                problems.append(
                    SqlProblem(
                        p.file,
                        site.line,
                        f"unknown ref {site.name!r}: not a table, view or transform of release "
                        f"{release.name!r} or of a release it dependsOn",
                        i,
                    )
                )
            elif resolver.is_own_transform(site.name):
                edges[t.name].append(site.name)
    order, cycles = topological_order(edges)
    for cycle in cycles:
        first = parsed[cycle[0]]
        line = next((s.line for s in first.refs if s.name == cycle[1]), 1)
        index = next(i for i, t in enumerate(spec.transforms) if t.name == cycle[0])
        problems.append(SqlProblem(first.file, line, "ref cycle: " + " → ".join(cycle), index))
    if problems:
        raise TransformError(problems)

    catalog = ctx.spec.presto.catalog if ctx and ctx.spec.presto else "hive"
    by_name = {t.name: (i, t) for i, t in enumerate(spec.transforms)}
    compiled: list[CompiledTransform] = []
    for name in order:
        i, t = by_name[name]
        p = parsed[name]
        if any(not resolver.known(r) for r in p.ref_names):
            continue
        ct = _compile_one(i, t, p, resolver, catalog, problems)
        if ct is not None:
            resolver.compiled[name] = ct
            compiled.append(ct)
    if problems:
        raise TransformError(problems)
    return _attribute_breaks(compiled)


def _attribute_breaks(compiled: list[CompiledTransform]) -> list[CompiledTransform]:
    """Record each contract break on the broken transform and on the upstream transforms of the
    release its broken columns come from (so the plan refuses the cause too)."""
    by_physical = {c.name: c for c in compiled}
    breaks: dict[str, list[str]] = {c.name: [] for c in compiled}
    for ct in compiled:
        for message, rels in _contract_breaks(ct):
            breaks[ct.name].append(f"contract of {ct.spec.name} broken: {message}")
            for rel in sorted(rels):
                up = by_physical.get(rel)
                if up is not None and up.name != ct.name:
                    breaks[up.name].append(
                        f"{up.spec.name} breaks the declared contract of downstream {ct.spec.name}: {message}"
                    )
    return [_with_breaks(c, breaks[c.name]) for c in compiled]


def _with_breaks(ct: CompiledTransform, breaks: list[str]) -> CompiledTransform:
    if not breaks:
        return ct
    return replace(ct, contract_breaks=tuple(dict.fromkeys(breaks)))


def check_release(
    release: PipelineRelease, read: Reader, upstream: Sequence[PipelineRelease] = ()
) -> list[SqlProblem]:
    """Every problem of the release's transforms (for ``pipectl validate``); [] when they compile."""
    if not release.spec.transforms:
        return []
    try:
        compile_release(release, read, None, upstream=upstream)
    except TransformError as e:
        return list(e.problems)
    return []


# --- what the rest of pipectl uses --------------------------------------------------------------


def transform_resources(
    release: PipelineRelease,
    ctx: StageContext,
    read: Reader,
    *,
    upstream: Sequence[PipelineRelease] = (),
    serving_version: str | None = None,
    view_segments: Mapping[str, Sequence[ViewSegment]] | None = None,
) -> list[TransformResource]:
    """The desired TransformResources of a release at a stage, dependencies first."""
    owner = Owner(release=release.name, version=release.spec.version)
    out: list[TransformResource] = []
    for ct in compile_release(
        release, read, ctx, upstream=upstream, serving_version=serving_version, view_segments=view_segments
    ):
        contract = None
        if ct.spec.columns is not None:
            contract = [Column(name=c.name, type=c.type) for c in ct.spec.columns]
        out.append(
            TransformResource(
                name=ct.name,
                owner=owner,
                materialized=ct.spec.materialized.value,
                compiled_sql_digest=ct.sql_digest,
                compiled_sql=ct.sql,
                digest=ct.digest,
                refs=list(ct.refs),
                upstream=[
                    TransformInput(
                        ref=r.logical, relation=r.physical, kind=r.kind, digest=r.digest, label=r.label
                    )
                    for r in ct.inputs
                ],
                depends_on=list(ct.depends_on),
                columns=list(ct.columns),
                contract=contract,
                contract_breaks=list(ct.contract_breaks),
                partition_by=list(ct.spec.partition_by),
            )
        )
    return out


def transform_lineage(
    release: PipelineRelease,
    stage_ctx: StageContext,
    read: Reader,
    *,
    upstream: Sequence[PipelineRelease] = (),
    serving_version: str | None = None,
) -> dict[str, list[str]]:
    """Column lineage of every transform at the stage, for ``Lineage.columns`` of the audit record:
    ``hive:<db.name>.<column>`` → ``[hive:<db.input>.<column>, …]``. Canary stages have no
    transforms; a release whose transforms do not compile has none either (``{}``)."""
    if stage_ctx.is_canary or not release.spec.transforms:
        return {}
    try:
        compiled = compile_release(
            release, read, stage_ctx, upstream=upstream, serving_version=serving_version
        )
    except TransformError:
        return {}
    out: dict[str, list[str]] = {}
    for ct in compiled:
        out.update(ct.lineage_columns())
    return out


def transform_datasets(
    release: PipelineRelease,
    stage_ctx: StageContext,
    read: Reader,
    *,
    upstream: Sequence[PipelineRelease] = (),
    serving_version: str | None = None,
) -> tuple[list[str], list[str]]:
    """(inputs, outputs) datasets of the release's transforms at the stage, named like the audit
    record's (``hive:db.name``): every relation read through a ref, and every transform."""
    if stage_ctx.is_canary or not release.spec.transforms:
        return [], []
    try:
        compiled = compile_release(
            release, read, stage_ctx, upstream=upstream, serving_version=serving_version
        )
    except TransformError:
        return [], []
    inputs = sorted({f"hive:{r.physical}" for ct in compiled for r in ct.inputs})
    outputs = [f"hive:{ct.name}" for ct in compiled]
    return inputs, outputs


def order_transform_actions(actions: Sequence[Action]) -> list[Action]:
    """Keep ``actions`` as they are but move each Transform action after the Transform actions it
    depends on (``Action.depends_on`` holds upstream transform names); stable otherwise."""
    idx = [i for i, a in enumerate(actions) if a.kind is ResourceKind.TRANSFORM]
    if len(idx) < 2:
        return list(actions)
    group = [actions[i] for i in idx]
    names = {a.name for a in group}
    edges = {a.name: [d for d in a.depends_on if d in names] for a in group}
    order, _ = topological_order(edges)
    rank = {n: k for k, n in enumerate(order)}
    ordered = sorted(group, key=lambda a: rank[a.name])
    out = list(actions)
    for i, a in zip(idx, ordered, strict=True):
        out[i] = a
    return out
