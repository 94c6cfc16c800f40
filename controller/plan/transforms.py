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

Where each step lives: 1-2 ``controller.plan.transforms_sql`` (with ``SqlProblem`` and
``TransformError``), 3 ``transforms_resolve``, 4-5 ``transforms_compile``, 6 ``transforms_contract``,
7 ``transforms_graph``; ``transforms_model`` holds ``Relation``, ``CompiledTransform`` and the
digests. This module runs them for a release and is what the rest of pipectl imports (it re-exports
the names above).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.model.manifest import PipelineRelease
from controller.plan.desired import StageContext
from controller.plan.resources import (
    Column,
    Owner,
    TransformInput,
    TransformResource,
    ViewSegment,
)
from controller.plan.transforms_compile import compile_one, hive_type
from controller.plan.transforms_contract import attribute_breaks
from controller.plan.transforms_graph import order_transform_actions, topological_order
from controller.plan.transforms_model import (
    UNKNOWN_TYPE,
    CompiledTransform,
    Relation,
    materialization_digest,
    sha,
    short,
)
from controller.plan.transforms_resolve import Resolver
from controller.plan.transforms_sql import (
    DIALECT,
    ParsedSql,
    RefSite,
    SqlProblem,
    TransformError,
    parse_sql,
)

__all__ = [
    "DIALECT",
    "UNKNOWN_TYPE",
    "CompiledTransform",
    "ParsedSql",
    "Reader",
    "RefSite",
    "Relation",
    "SqlProblem",
    "TransformError",
    "check_release",
    "compile_release",
    "hive_type",
    "materialization_digest",
    "order_transform_actions",
    "parse_sql",
    "sha",
    "short",
    "topological_order",
    "transform_datasets",
    "transform_lineage",
    "transform_resources",
]

Reader = Callable[[str], bytes]


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
    parsed = _parse_all(release, read, problems)

    resolver = Resolver(release, upstream, ctx, serving_version, view_segments or {})
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
        ct = compile_one(i, t, p, resolver, catalog, problems)
        if ct is not None:
            resolver.compiled[name] = ct
            compiled.append(ct)
    if problems:
        raise TransformError(problems)
    return attribute_breaks(compiled)


def _parse_all(release: PipelineRelease, read: Reader, problems: list[SqlProblem]) -> dict[str, ParsedSql]:
    """Steps 1 and 2 for every transform of the release: name → parsed SQL (a file that cannot be
    read is left out); the problems found go to ``problems``."""
    parsed: dict[str, ParsedSql] = {}
    for i, t in enumerate(release.spec.transforms):
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
    return parsed


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
