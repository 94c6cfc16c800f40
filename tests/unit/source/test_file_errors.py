"""A bad file a release references is reported at the manifest line that references it AND names
the file itself: ``releases/x.yaml:15: spec.schemas[0].path: schemas/bad.avsc: invalid Avro schema: …``
(``controller.source.repo_files``)."""

from __future__ import annotations

from pathlib import Path

from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
SCHEMA = "schemas/host_metric_event.avsc"


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def test_invalid_avro_schema_names_the_schema_file(repo: Path) -> None:
    (repo / SCHEMA).write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "strang"}]}')
    [p] = problems(repo)
    assert p.startswith(f"{REL}:15: spec.schemas[0].path: {SCHEMA}: invalid Avro schema: "), p
    assert "strang" in p


def test_non_utf8_schema_names_the_schema_file_and_its_line(repo: Path) -> None:
    (repo / SCHEMA).write_bytes(b'{"type": "record",\n "doc": "caf\xe9"}')
    assert problems(repo) == [
        f"{REL}:15: spec.schemas[0].path: {SCHEMA}:2: file is not valid UTF-8 (byte 0xe9 at offset 31)"
    ]


def test_json_schema_not_an_object_names_the_file(repo: Path) -> None:
    text = (repo / REL).read_text().replace("format: avro", "format: json", 1)
    (repo / REL).write_text(text)
    (repo / SCHEMA).write_text("[1, 2]")
    assert problems(repo) == [f"{REL}:15: spec.schemas[0].path: {SCHEMA}: a JSON schema must be an object"]


def test_non_utf8_dag_names_the_dag_file(repo: Path) -> None:
    (repo / "dags" / "host_metrics_daily.py").write_bytes(b"# \xff\n")
    assert problems(repo) == [
        f"{REL}:54: spec.dags[0].path: dags/host_metrics_daily.py:1: file is not valid UTF-8 "
        "(byte 0xff at offset 2)"
    ]


def test_sql_syntax_error_names_the_sql_file(repo: Path) -> None:
    (repo / "transforms" / "host_metrics_daily.sql").write_text("SELECT 1 AS one FROM\n")
    found = problems(repo)
    on_manifest = [p for p in found if p.startswith(f"{REL}:58: spec.transforms[0].sql: ")]
    assert on_manifest and "transforms/host_metrics_daily.sql:" in on_manifest[0], found
