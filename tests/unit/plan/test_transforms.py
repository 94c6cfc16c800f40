"""SQL transforms (pure): templates, parsing, undeclared tables, ref resolution per stage, compiled
SQL and digests, modified-only reasons, contracts, ordering and column lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.adapters.transforms import _partition_predicate, parse_meta, presto_to_hive_type
from controller.model.errors import PermanentBackendError
from controller.model.manifest import Environment, PipelineRelease
from controller.plan.actions import Action, DiffContext, Op
from controller.plan.desired import StageContext, desired_resources, stage_context
from controller.plan.resources import ResourceKind, TransformResource, ViewSegment
from controller.plan.rules.transform import diff_transform
from controller.plan.transforms import (
    TransformError,
    check_release,
    compile_release,
    order_transform_actions,
    parse_sql,
    topological_order,
    transform_datasets,
    transform_lineage,
    transform_resources,
)
from controller.source.validate import load_repo

EXAMPLE_SQL = (
    Path(__file__).resolve().parents[3] / "manifests" / "transforms" / "host_metrics_daily.sql"
).read_text()

TABLE_1M: dict[str, Any] = {
    "name": "telemetry.host_metrics_1m",
    "columns": [
        {"name": "host", "type": "string"},
        {"name": "metric", "type": "string"},
        {"name": "window_start", "type": "timestamp"},
        {"name": "samples", "type": "bigint"},
        {"name": "avg_value", "type": "double"},
        {"name": "max_value", "type": "double"},
    ],
    "partitionedBy": [{"name": "dt", "type": "string"}],
}
JOB: dict[str, Any] = {
    "name": "agg",
    "entrypoint": "jobs/agg.py",
    "sources": [{"topic": "telemetry.host_metrics"}],
    "sinks": [{"table": "telemetry.host_metrics_1m"}],
    "strategy": "blueGreen",
}
DAILY_CONTRACT = [
    {"name": "host", "type": "string"},
    {"name": "metric", "type": "string"},
    {"name": "day", "type": "date"},
    {"name": "samples", "type": "bigint"},
    {"name": "avg_value", "type": "double"},
    {"name": "max_value", "type": "double"},
    {"name": "dt", "type": "string"},
]


def release(
    transforms: list[dict[str, Any]],
    *,
    version: str = "1.0.0",
    views: bool = True,
    job: bool = True,
    name: str = "host-metrics",
    tables: list[dict[str, Any]] | None = None,
    depends_on: list[str] | None = None,
) -> PipelineRelease:
    spec: dict[str, Any] = {
        "version": version,
        "topics": [{"name": "telemetry.host_metrics", "partitions": 1, "replicationFactor": 1}],
        "tables": tables if tables is not None else [TABLE_1M],
        "streamingJobs": [JOB] if job else [],
        "views": [{"name": "telemetry.host_metrics", "table": "telemetry.host_metrics_1m"}] if views else [],
        "transforms": transforms,
        "dependsOn": depends_on or [],
        "rollout": {"stages": ["dev", "prod"]},
    }
    return PipelineRelease.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "PipelineRelease",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def env(name: str, prefix: str, canary_of: str | None = None) -> Environment:
    spec: dict[str, Any] = (
        {"canaryOf": canary_of}
        if canary_of
        else {
            "kafka": {"bootstrapServers": "k:9092"},
            "hive": {"host": "h", "databasePrefix": prefix},
            "presto": {"host": "p"},
            "airflow": {"url": "http://a"},
            "spark": {},
        }
    )
    return Environment.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


ENVS = {"dev": env("dev", "dev_"), "prod": env("prod", ""), "canary": env("canary", "", "prod")}
DEV = stage_context("dev", ENVS)
PROD = stage_context("prod", ENVS)


def reader(files: dict[str, str]) -> Any:
    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path].encode()

    return read


def daily(sql: str = "transforms/daily.sql", **kw: Any) -> dict[str, Any]:
    return {"name": "telemetry.host_metrics_daily", "sql": sql, "materialized": "table", **kw}


def problems_of(rel: PipelineRelease, files: dict[str, str]) -> list[str]:
    return [str(p) for p in check_release(rel, reader(files))]


# --- templates and parsing ---------------------------------------------------------------------


def test_refs_are_found_with_their_lines() -> None:
    p = parse_sql("SELECT a\nFROM {{ ref('db.t') }} x\nJOIN {{ref(\"db.u\")}} y ON x.a = y.a\n", "f.sql")
    assert p.problems == []
    assert [(r.name, r.line) for r in p.refs] == [("db.t", 2), ("db.u", 3)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT a\nFROM {{ source('x', 'y') }}",
            "f.sql:2: unsupported template expression {{ source('x', 'y') }}: only {{ ref('db.name') }} is allowed",
        ),
        (
            "SELECT a\n{% if x %}\nFROM {{ ref('db.t') }}",
            "f.sql:2: unsupported template expression {% if x %}: only {{ ref('db.name') }} is allowed",
        ),
        (
            "SELECT a FROM {{ ref('nodot') }}",
            "f.sql:1: ref('nodot'): expected 'db.name' (lower-case identifiers)",
        ),
        ("SELECT a\nFROM {{ ref('db.t') ", "f.sql:2: unclosed template expression"),
        (
            "SELECT a,\n  b\nFROM {{ ref('db.t') }}\nWHERE\n",
            "f.sql:4: SQL syntax error: incomplete WHERE (near 'WHERE')",
        ),
        ("SELECT 1 AS a;\nSELECT 2 AS b", "f.sql:2: a transform is one query; found more than one statement"),
        ("INSERT INTO x SELECT 1", "f.sql:1: a transform is a query (SELECT …), not INSERT"),
        ("SELECT 'abc\nFROM x", "f.sql:2: SQL syntax error: unterminated string, identifier or comment"),
    ],
)
def test_template_and_syntax_problems_carry_the_sql_line(sql: str, expected: str) -> None:
    assert [str(p) for p in parse_sql(sql, "f.sql").problems] == [expected]


def test_a_table_without_ref_is_an_undeclared_dependency() -> None:
    sql = "WITH recent AS (SELECT * FROM {{ ref('db.t') }})\nSELECT r.a\nFROM recent r\nJOIN raw.events e ON r.a = e.a"
    assert [str(p) for p in parse_sql(sql, "f.sql").problems] == [
        "f.sql:4: table raw.events is referenced without ref() (undeclared dependency): "
        "write {{ ref('raw.events') }}"
    ]


def test_the_example_parses_with_one_ref() -> None:
    p = parse_sql(EXAMPLE_SQL, "transforms/host_metrics_daily.sql")
    assert p.problems == [] and [(r.name, r.line) for r in p.refs] == [("telemetry.host_metrics_1m", 12)]


# --- ref resolution and compiled SQL ----------------------------------------------------------------


def test_example_compiles_for_dev_against_the_serving_view() -> None:
    [ct] = compile_release(release([daily()]), reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV)
    assert ct.name == "dev_telemetry.host_metrics_daily"
    [inp] = ct.inputs
    assert (inp.physical, inp.kind, inp.label) == ("dev_telemetry.host_metrics", "table", "v1_0_0")
    assert inp.digest == "dev_telemetry.host_metrics_1m__v1_0_0@1.0.0"
    assert ct.sql == (
        'SELECT\n  "host",\n  "metric",\n  CAST("dt" AS DATE) AS "day",\n  SUM("samples") AS "samples",\n'
        '  SUM("avg_value" * CAST("samples" AS DOUBLE)) / CAST(SUM("samples") AS DOUBLE) AS "avg_value",\n'
        '  MAX("max_value") AS "max_value",\n  "dt"\nFROM "hive"."dev_telemetry"."host_metrics"\n'
        'WHERE\n  "samples" > 0\nGROUP BY\n  "host",\n  "metric",\n  "dt"'
    )
    assert [(c.name, c.type) for c in ct.columns] == [(c["name"], c["type"]) for c in DAILY_CONTRACT]


def test_prod_has_no_prefix_and_another_digest() -> None:
    rel, read = release([daily()]), reader({"transforms/daily.sql": EXAMPLE_SQL})
    [dev] = compile_release(rel, read, DEV)
    [prod] = compile_release(rel, read, PROD)
    assert prod.name == "telemetry.host_metrics_daily"
    assert 'FROM "hive"."telemetry"."host_metrics"' in prod.sql
    assert prod.digest != dev.digest


def test_without_a_serving_view_a_blue_green_table_resolves_to_the_serving_version() -> None:
    rel = release([daily()], views=False)
    read = reader({"transforms/daily.sql": EXAMPLE_SQL})
    [ct] = compile_release(rel, read, DEV, serving_version="0.9.0")
    assert ct.inputs[0].physical == "dev_telemetry.host_metrics_1m__v0_9_0"
    assert '"dev_telemetry"."host_metrics_1m__v0_9_0"' in ct.sql


ICEBERG_1M: dict[str, Any] = {
    **{k: v for k, v in TABLE_1M.items() if k != "partitionedBy"},
    "columns": [*TABLE_1M["columns"], {"name": "dt", "type": "string"}],
    "format": "iceberg",
    "partitioning": ["days(window_start)"],
}


def test_an_iceberg_table_is_read_in_the_iceberg_catalog_and_its_serving_view_in_the_stages() -> None:
    read = reader({"transforms/daily.sql": EXAMPLE_SQL})
    [direct] = compile_release(release([daily()], views=False, tables=[ICEBERG_1M]), read, DEV)
    assert direct.inputs[0].catalog == "iceberg"
    assert 'FROM "iceberg"."dev_telemetry"."host_metrics_1m__v1_0_0"' in direct.sql
    assert [(c.name, c.type) for c in direct.columns] == [(c["name"], c["type"]) for c in DAILY_CONTRACT]
    [served] = compile_release(release([daily()], tables=[ICEBERG_1M]), read, DEV)
    assert served.inputs[0].catalog is None  # a Presto view over the table, in the stage's catalog
    assert 'FROM "hive"."dev_telemetry"."host_metrics"' in served.sql


def test_a_plain_table_resolves_to_itself_and_its_digest_follows_the_release_version() -> None:
    rel = release([daily()], views=False, job=False)
    [ct] = compile_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV)
    assert (ct.inputs[0].physical, ct.inputs[0].label) == ("dev_telemetry.host_metrics_1m", "1.0.0")


def test_a_ref_into_a_depends_on_release_uses_its_names_and_schema() -> None:
    upstream = release([], name="metrics-base")
    rel = release(
        [daily()], name="dashboards", tables=[], views=False, job=False, depends_on=["metrics-base"]
    )
    [ct] = compile_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV, upstream=[upstream])
    assert ct.inputs[0].physical == "dev_telemetry.host_metrics"
    assert ct.columns[3].type == "bigint"


def test_without_the_depends_on_specs_a_stage_compile_resolves_such_refs_by_name() -> None:
    rel = release(
        [daily()], name="dashboards", tables=[], views=False, job=False, depends_on=["metrics-base"]
    )
    read = reader({"transforms/daily.sql": EXAMPLE_SQL})
    [ct] = compile_release(rel, read, DEV)
    assert (ct.inputs[0].physical, ct.inputs[0].kind) == ("dev_telemetry.host_metrics_1m", "external")
    assert not ct.columns_known  # no schema: types are not inferred
    assert [p.message.split(":")[0] for p in check_release(rel, read)] == [
        "unknown ref 'telemetry.host_metrics_1m'"
    ]


def test_unknown_ref_and_unknown_column_are_problems() -> None:
    rel = release([daily()])
    assert problems_of(rel, {"transforms/daily.sql": "SELECT a\nFROM {{ ref('telemetry.nope') }}"}) == [
        "transforms/daily.sql:2: unknown ref 'telemetry.nope': not a table, view or transform of release "
        "'host-metrics' or of a release it dependsOn"
    ]
    sql = "SELECT host,\n  nope AS n\nFROM {{ ref('telemetry.host_metrics_1m') }}"
    assert problems_of(rel, {"transforms/daily.sql": sql}) == [
        "transforms/daily.sql:2: unknown column 'nope': no input has it (ref('telemetry.host_metrics_1m'))"
    ]


def test_output_columns_need_names_and_partition_columns_come_last() -> None:
    rel = release([daily()])
    sql = "SELECT host, count(*)\nFROM {{ ref('telemetry.host_metrics_1m') }} GROUP BY host"
    assert problems_of(rel, {"transforms/daily.sql": sql}) == [
        "transforms/daily.sql:1: output column 2 (COUNT(*)) needs a name: add AS <name>"
    ]
    rel = release([daily(materialized="incremental")])
    [p] = check_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}))
    assert (p.field, p.message) == (
        "materialized",
        "materialized: incremental needs partitionBy (the partitions a run overwrites)",
    )
    rel = release([daily(materialized="incremental", partitionBy=["host"])])
    [p] = check_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}))
    assert p.field == "partitionBy" and "must be the last output columns" in p.message


def test_digest_ignores_comments_and_follows_sql_and_upstream_versions() -> None:
    rel = release([daily()])
    base = compile_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV)[0]
    commented = compile_release(rel, reader({"transforms/daily.sql": "-- note\n" + EXAMPLE_SQL}), DEV)[0]
    assert (commented.sql_digest, commented.digest) == (base.sql_digest, base.digest)
    changed = compile_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL.replace("> 0", "> 1")}), DEV)[
        0
    ]
    assert changed.sql_digest != base.sql_digest and changed.digest != base.digest
    newer = compile_release(
        release([daily()], version="1.1.0"), reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV
    )[0]
    assert newer.sql_digest == base.sql_digest  # it reads the serving view, whose name does not change
    assert newer.digest != base.digest and newer.inputs[0].label == "v1_1_0"


def test_view_segments_are_part_of_the_input_digest() -> None:
    rel, read = release([daily()]), reader({"transforms/daily.sql": EXAMPLE_SQL})
    plain = compile_release(rel, read, DEV)[0]
    segs = {
        "telemetry.host_metrics": [
            ViewSegment(table="a.b"),
            ViewSegment(table="a.c", since="2026-01-01 00:00:00"),
        ]
    }
    stitched = compile_release(rel, read, DEV, view_segments=segs)[0]
    assert stitched.sql_digest == plain.sql_digest and stitched.digest != plain.digest


# --- ordering --------------------------------------------------------------------------------------

CHAIN = {
    "transforms/daily.sql": EXAMPLE_SQL,
    "transforms/weekly.sql": "SELECT host, SUM(samples) AS samples\nFROM {{ ref('telemetry.host_metrics_daily') }}\nGROUP BY host",
    "transforms/top.sql": "SELECT host\nFROM {{ ref('telemetry.a_weekly') }}\nWHERE samples > 10",
}


def chain_release(**weekly: Any) -> PipelineRelease:
    return release(
        [
            {"name": "telemetry.top_hosts", "sql": "transforms/top.sql"},
            {"name": "telemetry.a_weekly", "sql": "transforms/weekly.sql", **weekly},
            daily(),
        ]
    )


def test_transforms_are_ordered_by_their_refs() -> None:
    compiled = compile_release(chain_release(), reader(CHAIN), DEV)
    assert [c.spec.name for c in compiled] == [
        "telemetry.host_metrics_daily",
        "telemetry.a_weekly",
        "telemetry.top_hosts",
    ]
    assert compiled[1].depends_on == ("dev_telemetry.host_metrics_daily",)
    assert compiled[1].inputs[0].kind == "transform"
    assert compiled[1].inputs[0].digest == compiled[0].digest
    assert [(c.name, c.type) for c in compiled[2].columns] == [("host", "string")]


def test_an_upstream_change_changes_every_downstream_digest_only() -> None:
    rel = chain_release()
    before = {c.spec.name: c for c in compile_release(rel, reader(CHAIN), DEV)}
    files = {**CHAIN, "transforms/daily.sql": EXAMPLE_SQL.replace("> 0", ">= 0")}
    after = {c.spec.name: c for c in compile_release(rel, reader(files), DEV)}
    for name in before:
        assert after[name].digest != before[name].digest, name
    assert after["telemetry.a_weekly"].sql_digest == before["telemetry.a_weekly"].sql_digest


def test_a_ref_cycle_is_an_error_naming_it() -> None:
    rel = release(
        [
            {"name": "telemetry.a", "sql": "a.sql"},
            {"name": "telemetry.b", "sql": "b.sql"},
        ]
    )
    files = {
        "a.sql": "SELECT x\nFROM {{ ref('telemetry.b') }}",
        "b.sql": "SELECT x FROM {{ ref('telemetry.a') }}",
    }
    assert problems_of(rel, files) == ["a.sql:2: ref cycle: telemetry.a → telemetry.b → telemetry.a"]
    assert topological_order({"a": ["a"]})[1] == [["a", "a"]]


def test_actions_are_ordered_by_depends_on() -> None:
    def act(name: str, deps: list[str]) -> Action:
        return Action(op=Op.UPDATE, kind=ResourceKind.TRANSFORM, name=name, reason="", depends_on=deps)

    view = Action(op=Op.CREATE, kind=ResourceKind.VIEW, name="v", reason="")
    ordered = order_transform_actions(
        [view, act("a_top", ["m_weekly"]), act("m_weekly", ["z_daily"]), act("z_daily", [])]
    )
    assert [a.name for a in ordered] == ["v", "z_daily", "m_weekly", "a_top"]


# --- contracts ------------------------------------------------------------------------------------------


def test_a_matching_contract_has_no_breaks() -> None:
    [ct] = compile_release(
        release([daily(columns=DAILY_CONTRACT)]), reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV
    )
    assert ct.contract_breaks == ()


def test_a_change_in_the_transform_that_breaks_its_contract_is_refused() -> None:
    sql = EXAMPLE_SQL.replace("SUM(samples) AS samples", "CAST(SUM(samples) AS double) AS samples")
    [res] = transform_resources(
        release([daily(columns=DAILY_CONTRACT)]), DEV, reader({"transforms/daily.sql": sql})
    )
    [a] = diff_transform(res, None, DiffContext())
    assert (a.op, a.reason_code) == (Op.REFUSE, "ContractBroken")
    assert a.reason == (
        "refused: contract of telemetry.host_metrics_daily broken: column samples is declared bigint in the "
        "contract of telemetry.host_metrics_daily but the compiled SQL yields double (computed from upstream "
        "telemetry.host_metrics_1m.samples)"
    )


def test_an_upstream_table_change_that_breaks_a_contract_names_both() -> None:
    table = {
        **TABLE_1M,
        "columns": [c if c["name"] != "max_value" else {**c, "type": "float"} for c in TABLE_1M["columns"]],
    }
    rel = release([daily(columns=DAILY_CONTRACT)], tables=[table], version="1.1.0")
    [ct] = compile_release(rel, reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV)
    assert ct.contract_breaks == (
        "contract of telemetry.host_metrics_daily broken: column max_value is declared double in the contract of "
        "telemetry.host_metrics_daily but the compiled SQL yields float (computed from upstream "
        "telemetry.host_metrics_1m.max_value)",
    )


def test_an_upstream_transform_that_breaks_a_downstream_contract_is_refused_too() -> None:
    weekly_contract = [{"name": "host", "type": "string"}, {"name": "samples", "type": "bigint"}]
    rel = chain_release(columns=weekly_contract)
    files = {
        **CHAIN,
        "transforms/daily.sql": EXAMPLE_SQL.replace("SUM(samples) AS samples", "SUM(avg_value) AS samples"),
    }
    res = {r.name: r for r in transform_resources(rel, DEV, reader(files))}
    up = res["dev_telemetry.host_metrics_daily"]
    down = res["dev_telemetry.a_weekly"]
    assert down.contract_breaks == [
        "contract of telemetry.a_weekly broken: column samples is declared bigint in the contract of "
        "telemetry.a_weekly but the compiled SQL yields double (computed from upstream "
        "telemetry.host_metrics_daily.samples)"
    ]
    assert up.contract_breaks == [
        "telemetry.host_metrics_daily breaks the declared contract of downstream telemetry.a_weekly: column "
        "samples is declared bigint in the contract of telemetry.a_weekly but the compiled SQL yields double "
        "(computed from upstream telemetry.host_metrics_daily.samples)"
    ]
    for r in (up, down):
        assert [a.reason_code for a in diff_transform(r, None, DiffContext())] == ["ContractBroken"]
    assert res["dev_telemetry.top_hosts"].contract_breaks == []


def test_missing_and_undeclared_columns_break_a_contract() -> None:
    contract = [c for c in DAILY_CONTRACT if c["name"] != "dt"] + [{"name": "region", "type": "string"}]
    [ct] = compile_release(
        release([daily(columns=contract)]), reader({"transforms/daily.sql": EXAMPLE_SQL}), DEV
    )
    assert ct.contract_breaks == (
        "contract of telemetry.host_metrics_daily broken: column region is declared in the contract of "
        "telemetry.host_metrics_daily but the SQL does not produce it",
        "contract of telemetry.host_metrics_daily broken: column dt is produced by telemetry.host_metrics_daily "
        "but not declared in its contract (computed from upstream telemetry.host_metrics_1m.dt)",
    )


# --- modified-only: what the rule says ------------------------------------------------------------------


def live_of(r: TransformResource) -> TransformResource:
    """What the adapter reads back after materializing ``r``."""
    return r.model_copy(update={"compiled_sql": None, "relation": f"{r.name}__{r.digest[7:15]}"})


def test_unchanged_transforms_are_not_re_run() -> None:
    rel = chain_release()
    for r in transform_resources(rel, DEV, reader(CHAIN)):
        assert diff_transform(r, live_of(r), DiffContext()) == []


def test_reasons_say_why_each_transform_runs() -> None:
    before = {r.name: r for r in transform_resources(chain_release(), DEV, reader(CHAIN))}
    after = {
        r.name: r for r in transform_resources(chain_release(), DEV, reader(CHAIN), serving_version="1.1.0")
    }
    reasons = {
        n: [a.reason for a in diff_transform(after[n], live_of(before[n]), DiffContext())] for n in after
    }
    daily_digest = after["dev_telemetry.host_metrics_daily"].digest
    weekly_digest = after["dev_telemetry.a_weekly"].digest
    assert reasons == {
        "dev_telemetry.host_metrics_daily": [
            "upstream telemetry.host_metrics_1m changed to v1_1_0; re-materialize"
        ],
        "dev_telemetry.a_weekly": [
            f"upstream transform telemetry.host_metrics_daily changed (sha256:{daily_digest[7:19]}); re-materialize"
        ],
        "dev_telemetry.top_hosts": [
            f"upstream transform telemetry.a_weekly changed (sha256:{weekly_digest[7:19]}); re-materialize"
        ],
    }
    files = {**CHAIN, "transforms/top.sql": CHAIN["transforms/top.sql"].replace("> 10", "> 20")}
    top = {r.name: r for r in transform_resources(chain_release(), DEV, reader(files))}
    assert [
        a.reason
        for a in diff_transform(
            top["dev_telemetry.top_hosts"], live_of(before["dev_telemetry.top_hosts"]), DiffContext()
        )
    ] == ["compiled SQL changed; re-materialize"]
    assert (
        diff_transform(
            top["dev_telemetry.a_weekly"], live_of(before["dev_telemetry.a_weekly"]), DiffContext()
        )
        == []
    )


# --- desired state, lineage, validate ------------------------------------------------------------------------


def test_desired_state_has_transforms_but_not_in_canary_stages(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text(EXAMPLE_SQL)
    snap = load_repo(repo)
    rel = snap.release("host-metrics")
    envs = {n: snap.environment(n) for n in snap.environments}

    def kinds(stage: str) -> list[str]:
        return [
            r.kind
            for r in desired_resources(rel, stage_context(stage, envs), lambda p: (repo / p).read_bytes())
        ]

    assert kinds("dev").count("Transform") == 1
    assert "Transform" not in kinds("canary")


def test_column_lineage_and_datasets_for_the_audit_record() -> None:
    rel, read = release([daily()]), reader({"transforms/daily.sql": EXAMPLE_SQL})
    lineage = transform_lineage(rel, DEV, read)
    assert lineage["hive:dev_telemetry.host_metrics_daily.avg_value"] == [
        "hive:dev_telemetry.host_metrics.avg_value",
        "hive:dev_telemetry.host_metrics.samples",
    ]
    assert lineage["hive:dev_telemetry.host_metrics_daily.day"] == ["hive:dev_telemetry.host_metrics.dt"]
    assert len(lineage) == 7
    assert transform_datasets(rel, DEV, read) == (
        ["hive:dev_telemetry.host_metrics"],
        ["hive:dev_telemetry.host_metrics_daily"],
    )
    canary = stage_context("canary", ENVS)
    assert transform_lineage(rel, canary, read) == {} and transform_datasets(rel, canary, read) == ([], [])


def test_lineage_through_joins_and_ctes() -> None:
    rel = release([daily(sql="j.sql"), {"name": "telemetry.hosts", "sql": "h.sql", "materialized": "view"}])
    files = {
        "h.sql": "SELECT DISTINCT host, metric FROM {{ ref('telemetry.host_metrics_1m') }}",
        "j.sql": (
            "WITH d AS (SELECT host, max_value FROM {{ ref('telemetry.host_metrics_1m') }})\n"
            "SELECT h.metric, d.max_value * 2 AS doubled\nFROM d JOIN {{ ref('telemetry.hosts') }} h ON d.host = h.host"
        ),
    }
    lineage = transform_lineage(rel, DEV, reader(files))
    assert lineage["hive:dev_telemetry.host_metrics_daily.metric"] == ["hive:dev_telemetry.hosts.metric"]
    assert lineage["hive:dev_telemetry.host_metrics_daily.doubled"] == [
        "hive:dev_telemetry.host_metrics.max_value"
    ]


def test_validate_reports_sql_problems_on_the_sql_file(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text(
        "SELECT host,\n  dt\nFROM {{ ref('telemetry.host_metrics_1m') }}\nJOIN raw.events e ON 1 = 1\n"
    )
    snap = load_repo(repo)
    assert [str(p) for p in snap.problems] == [
        "releases/host-metrics.yaml:58: spec.transforms[0].sql: transforms/host_metrics_daily.sql:4: table "
        "raw.events is referenced without ref() (undeclared dependency): write {{ ref('raw.events') }}",
        "transforms/host_metrics_daily.sql:4: table raw.events is referenced without ref() (undeclared "
        "dependency): write {{ ref('raw.events') }}",
    ]
    assert "host-metrics" in snap.invalid_releases


def test_the_example_repository_is_valid(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text(EXAMPLE_SQL)
    assert load_repo(repo).problems == []


def test_compile_errors_raise_with_every_problem() -> None:
    rel = release([daily(), {"name": "telemetry.other", "sql": "o.sql"}])
    with pytest.raises(TransformError) as e:
        compile_release(rel, reader({"transforms/daily.sql": "SELECT FROM", "o.sql": "SELECT {{ x }}"}), DEV)
    assert [p.file for p in e.value.problems] == ["o.sql", "transforms/daily.sql"]


# --- adapter helpers (pure) -----------------------------------------------------------------------------


def test_the_view_record_is_read_back() -> None:
    text = 'WITH\n  "pipectl_transform" AS (\n   SELECT \'{"digest":"sha256:ab","note":"it\'\'s"}\' "meta"\n\n) \nSELECT *'
    assert parse_meta(text) == {"digest": "sha256:ab", "note": "it's"}
    assert parse_meta("SELECT 1") is None


def test_presto_types_map_to_hive_types() -> None:
    assert [
        presto_to_hive_type(t)
        for t in (
            "varchar",
            "bigint",
            "integer",
            "double",
            "date",
            "decimal(10,2)",
            "array(varchar)",
            "timestamp(3)",
        )
    ] == ["string", "bigint", "int", "double", "date", "decimal(10,2)", "array<string>", "timestamp"]


def test_partition_predicates_are_typed_and_checked() -> None:
    cols = [("host", "varchar", False), ("dt", "varchar", True)]
    assert _partition_predicate("2026-01-01", cols) == "\"dt\" = '2026-01-01'"
    assert _partition_predicate("dt=2026-01-01", cols) == "\"dt\" = '2026-01-01'"
    assert _partition_predicate("2026-01-01", [("d", "date", True)]) == "\"d\" = DATE '2026-01-01'"
    with pytest.raises(PermanentBackendError):
        _partition_predicate("x; DROP TABLE t", [("d", "date", True)])
    with pytest.raises(PermanentBackendError):
        _partition_predicate("region=eu", cols)


def test_stage_context_is_what_desired_uses() -> None:
    assert isinstance(DEV, StageContext) and DEV.db_prefix == "dev_"
