"""`pipectl validate`: one test per class of bad input, each with the exact expected message."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.source.validate import load_repo, validate_paths

REL = "releases/host-metrics.yaml"


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def edit(root: Path, old: str, new: str, file: str = REL) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_reference_repo_is_valid(repo: Path) -> None:
    snap = load_repo(repo)
    assert snap.problems == []
    assert list(snap.releases) == ["host-metrics"]
    assert sorted(snap.environments) == ["canary", "dev", "prod", "staging"]


def test_a_valid_snapshot_keeps_objects_not_raw_documents(repo: Path) -> None:
    snap = load_repo(repo)
    kept = [*snap.releases.values(), *snap.environments.values()]
    assert kept and all(loaded.doc.data is None and loaded.doc._lines is None for loaded in kept)
    assert snap.release("host-metrics").spec.version == "1.0.0"
    assert snap.releases["host-metrics"].line("spec", "owner") == 11  # read again from the text


def test_yaml_syntax_error(repo: Path) -> None:
    edit(repo, "  version: 1.0.0", "  version: [1.0.0")
    [p] = problems(repo)
    assert p.startswith(f"{REL}:11: YAML syntax error: ")


def test_duplicate_key(repo: Path) -> None:
    edit(repo, "  owner: observability-infra", "  owner: observability-infra\n  owner: someone")
    assert problems(repo) == [f"{REL}:12: spec.owner: duplicate key 'owner' (first on line 11)"]


def test_alias_bomb_fails_fast(repo: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{','.join([prev] * 10)}]")
    (repo / "releases" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert problems(repo) == [
        "releases/bomb.yaml:5: document expands to more than 100000 nodes through aliases; refusing to load it"
    ]


def test_recursive_alias(repo: Path) -> None:
    (repo / "releases" / "rec.yaml").write_text("a: &a [*a]\n")
    assert problems(repo) == ["releases/rec.yaml:1: recursive alias is not allowed"]


def test_non_utf8(repo: Path) -> None:
    (repo / "releases" / "latin1.yaml").write_bytes(b"apiVersion: pipectl.dev/v1alpha1\nkind: Caf\xe9\n")
    assert problems(repo) == ["releases/latin1.yaml:2: file is not valid UTF-8 (byte 0xe9 at offset 42)"]


def test_wrong_kind(repo: Path) -> None:
    edit(repo, "kind: PipelineRelease", "kind: PipelineRelase")
    assert problems(repo) == [
        f"{REL}:4: kind: unknown kind 'PipelineRelase' (expected one of: PipelineRelease, Environment)"
    ]


def test_wrong_api_version(repo: Path) -> None:
    edit(repo, "apiVersion: pipectl.dev/v1alpha1", "apiVersion: pipectl.dev/v1")
    assert problems(repo) == [
        f"{REL}:3: apiVersion: unsupported apiVersion 'pipectl.dev/v1' (expected pipectl.dev/v1alpha1)"
    ]


def test_unknown_field(repo: Path) -> None:
    edit(repo, "      replicationFactor: 1", "      replicationFactor: 1\n      replicas: 3")
    assert problems(repo) == [f"{REL}:21: spec.topics[0].replicas: unknown field"]


def test_missing_required_field(repo: Path) -> None:
    edit(repo, "      partitions: 6\n", "")
    assert problems(repo) == [f"{REL}:18: spec.topics[0].partitions: required field is missing"]


def test_every_problem_is_reported(repo: Path) -> None:
    edit(repo, "      partitions: 6", "      partitions: 0")
    edit(repo, "  version: 1.0.0", "  version: one")
    assert problems(repo) == [
        f"{REL}:10: spec.version: invalid version 'one': expected semantic version MAJOR.MINOR.PATCH",
        f"{REL}:19: spec.topics[0].partitions: must be > 0 (got 0)",
    ]


def test_non_positive_replication(repo: Path) -> None:
    edit(repo, "      replicationFactor: 1", "      replicationFactor: -1")
    assert problems(repo) == [f"{REL}:20: spec.topics[0].replicationFactor: must be > 0 (got -1)"]


def test_duplicate_names_within_release(repo: Path) -> None:
    edit(
        repo,
        "  views:\n",
        "    - name: telemetry.host_metrics_1m\n      columns:\n        - {name: host, type: string}\n  views:\n",
    )
    assert problems(repo) == [
        f"{REL}:37: spec.tables[1].name: duplicate table/view/transform name 'telemetry.host_metrics_1m' (first at line 26)"
    ]


def test_duplicate_names_across_releases(repo: Path) -> None:
    text = (repo / REL).read_text().replace("name: host-metrics", "name: host-metrics-copy", 1)
    (repo / "releases" / "copy.yaml").write_text(text)
    got = problems(repo)
    assert got[0] == (
        "releases/copy.yaml:18: spec.topics[0].name: topic 'telemetry.host_metrics' is already declared "
        "by release 'host-metrics' (releases/host-metrics.yaml:18)"
    )
    assert [g.split(": ")[1] for g in got] == [
        "spec.topics[0].name",
        "spec.tables[0].name",
        "spec.views[0].name",
        "spec.streamingJobs[0].name",
        "spec.dags[0].id",
        "spec.transforms[0].name",
    ]


def test_duplicate_release_name(repo: Path) -> None:
    (repo / "releases" / "again.yaml").write_text((repo / REL).read_text())
    got = problems(repo)
    assert (
        "releases/host-metrics.yaml:6: metadata.name: duplicate PipelineRelease 'host-metrics' "
        "(also defined at releases/again.yaml:6)"
    ) in got


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    - name: telemetry.host_metrics\n      partitions",
            "    - name: telemetry/host metrics\n      partitions",
            "18: spec.topics[0].name: invalid topic name 'telemetry/host metrics': allowed characters are [A-Za-z0-9._-], 1-249 long",
        ),
        (
            "    - name: telemetry.host_metrics_1m\n      columns",
            "    - name: Telemetry.host_metrics_1m\n      columns",
            "26: spec.tables[0].name: invalid Hive database 'Telemetry': must match [a-z_][a-z0-9_]*",
        ),
        (
            "        - {name: host, type: string}",
            '        - {name: "host; DROP TABLE x", type: string}',
            "28: spec.tables[0].columns[0].name: invalid Hive column 'host; DROP TABLE x': must match [a-z_][a-z0-9_]*",
        ),
        (
            "        - {name: samples, type: bigint}",
            '        - {name: samples, type: "bigint) --"}',
            "31: spec.tables[0].columns[3].type: invalid column type 'bigint) --'",
        ),
        (
            "    - id: host_metrics_daily",
            "    - id: host metrics daily",
            "53: spec.dags[0].id: invalid DAG id 'host metrics daily': allowed characters are [A-Za-z0-9_.-]",
        ),
        (
            '        spark.sql.shuffle.partitions: "4"',
            '        spark.sql.shuffle partitions: "4"',
            "50: spec.streamingJobs[0].conf: invalid Spark conf key 'spark.sql.shuffle partitions': must match spark.[A-Za-z0-9_.-]+",
        ),
    ],
)
def test_identifier_grammar(repo: Path, old: str, new: str, expected: str) -> None:
    edit(repo, old, new)
    assert problems(repo) == [f"{REL}:{expected}"]


def test_path_escaping_repo(repo: Path) -> None:
    edit(repo, "path: schemas/host_metric_event.avsc", "path: ../../etc/passwd")
    assert problems(repo) == [
        f"{REL}:15: spec.schemas[0].path: path '../../etc/passwd' escapes the repository root"
    ]


def test_absolute_path(repo: Path) -> None:
    edit(repo, "entrypoint: jobs/host_metrics_agg.py", "entrypoint: /etc/passwd")
    assert problems(repo) == [
        f"{REL}:43: spec.streamingJobs[0].entrypoint: path '/etc/passwd' must be relative to the repository root"
    ]


def test_missing_schema_file(repo: Path) -> None:
    (repo / "schemas" / "host_metric_event.avsc").unlink()
    assert problems(repo) == [
        f"{REL}:15: spec.schemas[0].path: file 'schemas/host_metric_event.avsc' does not exist"
    ]


def test_invalid_avro_schema(repo: Path) -> None:
    (repo / "schemas" / "host_metric_event.avsc").write_text(
        '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "strang"}]}'
    )
    [p] = problems(repo)
    assert p.startswith(f"{REL}:15: spec.schemas[0].path: schemas/host_metric_event.avsc: invalid Avro schema: ")
    assert "strang" in p


def test_invalid_json_in_schema(repo: Path) -> None:
    (repo / "schemas" / "host_metric_event.avsc").write_text('{"type": "record",\n "name": }')
    assert problems(repo) == [
        f"{REL}:15: spec.schemas[0].path: schemas/host_metric_event.avsc:2: invalid JSON: Expecting value"
    ]


def test_python_syntax_error_in_job(repo: Path) -> None:
    (repo / "jobs" / "host_metrics_agg.py").write_text("def f(:\n")
    assert problems(repo) == [
        f"{REL}:43: spec.streamingJobs[0].entrypoint: jobs/host_metrics_agg.py:1: Python syntax error: invalid syntax"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      valueSchema: host-metric-event",
            "      valueSchema: host-metric-evt",
            "24: spec.topics[0].valueSchema: unknown schema 'host-metric-evt'",
        ),
        (
            "        - topic: telemetry.host_metrics",
            "        - topic: telemetry.other",
            "45: spec.streamingJobs[0].sources[0].topic: unknown topic 'telemetry.other'",
        ),
        (
            "        - table: telemetry.host_metrics_1m",
            "        - table: telemetry.other",
            "47: spec.streamingJobs[0].sinks[0].table: unknown table 'telemetry.other'",
        ),
        (
            "      table: telemetry.host_metrics_1m",
            "      table: telemetry.nope",
            "40: spec.views[0].table: unknown table 'telemetry.nope'",
        ),
        (
            "    stages: [dev, staging, canary, prod]",
            "    stages: [dev, qa, canary, prod]",
            "61: spec.rollout.stages[1]: unknown stage 'qa' (no Environment named so)\n"
            "67: spec.rollout.gates[1].stages[0]: stage 'staging' is not in rollout.stages",
        ),
        (
            "        stages: [canary]",
            "        stages: [canari]",
            "75: spec.rollout.gates[3].stages[0]: stage 'canari' is not in rollout.stages",
        ),
        (
            "  owner: observability-infra",
            "  owner: observability-infra\n  dependsOn: [telemetry-common]",
            "12: spec.dependsOn[0]: unknown release 'telemetry-common'",
        ),
    ],
)
def test_undefined_references(repo: Path, old: str, new: str, expected: str) -> None:
    edit(repo, old, new)
    assert problems(repo) == [f"{REL}:{line}" for line in expected.split("\n")]


def test_unknown_gate_type(repo: Path) -> None:
    edit(repo, "        type: approval", "        type: manualApproval")
    assert problems(repo) == [
        f"{REL}:77: spec.rollout.gates[4]: unknown gate type 'manualApproval' (expected one of: "
        "schemaCompatibility, dataQuality, streamingHealth, canaryComparison, approval)"
    ]


def test_invalid_expectation(repo: Path) -> None:
    edit(repo, 'expect: "> 0"', 'expect: "more than 0"')
    assert problems(repo) == [
        f"{REL}:69: spec.rollout.gates[1].expect: invalid expectation 'more than 0': expected an operator and a number, e.g. '> 0'"
    ]


def _release(name: str, depends: list[str]) -> str:
    return (
        "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\n"
        f"metadata:\n  name: {name}\nspec:\n  version: 0.1.0\n  dependsOn: {depends}\n"
        "  rollout:\n    stages: [dev]\n"
    ).replace("'", "")


def test_dependency_cycle_is_named(repo: Path) -> None:
    (repo / "releases" / "a.yaml").write_text(_release("a", ["b"]))
    (repo / "releases" / "b.yaml").write_text(_release("b", ["c"]))
    (repo / "releases" / "c.yaml").write_text(_release("c", ["a"]))
    assert problems(repo) == ["releases/a.yaml:7: spec.dependsOn[0]: dependency cycle: a → b → c → a"]


def test_valid_variants_dependson_and_optional_parts(repo: Path) -> None:
    (repo / "releases" / "common.yaml").write_text(
        "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\nmetadata:\n  name: telemetry-common\n"
        "spec:\n  version: 2.0.0-rc.1\n  topics:\n    - {name: telemetry.shared, partitions: 3, replicationFactor: 1}\n"
        "  rollout:\n    stages: [dev, staging]\n"
    )
    (repo / "releases" / "consumer.yaml").write_text(
        "apiVersion: pipectl.dev/v1alpha1\nkind: PipelineRelease\nmetadata:\n  name: shared-consumer\n"
        "spec:\n  version: 0.1.0\n  dependsOn: [telemetry-common]\n"
        "  tables:\n    - name: telemetry.shared_1m\n      columns: [{name: n, type: bigint}]\n"
        "  streamingJobs:\n    - name: shared-agg\n      entrypoint: jobs/host_metrics_agg.py\n"
        "      sources: [{topic: telemetry.shared}]\n      sinks: [{table: telemetry.shared_1m}]\n"
    )
    snap = load_repo(repo)
    assert snap.problems == []
    assert sorted(snap.releases) == ["host-metrics", "shared-consumer", "telemetry-common"]


def test_invalid_release_does_not_stop_others(repo: Path) -> None:
    (repo / "releases" / "broken.yaml").write_text(_release("broken", []).replace("0.1.0", "x"))
    snap = load_repo(repo)
    assert "host-metrics" in snap.releases
    assert "broken" in snap.invalid_releases


def test_secret_must_be_a_reference(repo: Path) -> None:
    edit(
        repo,
        "passwordFrom: env:PIPECTL_AIRFLOW_PASSWORD",
        "passwordFrom: hunter2",
        file="environments/dev.yaml",
    )
    assert problems(repo) == [
        "environments/dev.yaml:20: spec.airflow.passwordFrom: passwordFrom must be env:VAR or file:PATH (secrets are never inline)"
    ]


def test_validate_paths_single_file(repo: Path) -> None:
    assert validate_paths([repo / REL]) == []
    assert validate_paths([repo]) == []


def test_reserved_table_properties_are_refused(repo: Path) -> None:
    edit(repo, "      format: iceberg", "      format: iceberg\n      properties: {owner: bench, pipectl.release: x}")
    assert problems(repo) == [
        f"{REL}:37: spec.tables[0].properties: table property 'owner' is reserved by Spark/Hive"
    ]
