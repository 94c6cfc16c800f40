"""Inputs ``bench/fuzz_manifests.py`` found that made the loader or the validator raise, or report a
problem without ``file:line``: each is now a problem on the line it comes from."""

from __future__ import annotations

from pathlib import Path

from controller.source.loader import MAX_DEPTH, load_documents
from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
HEAD = "apiVersion: pipectl.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: x\n"


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def test_nul_character_is_a_problem_on_its_line(repo: Path) -> None:
    # the YAML reader raised ReaderError out of yaml.SafeLoader(text), ending the whole repo's load
    (repo / "environments" / "nul.yaml").write_text(HEAD + "spec:\n  promotion: auto\x00matic\n")
    assert problems(repo) == ["environments/nul.yaml:6: character '\\x00' is not allowed in YAML"]


def test_reader_line_counts_yaml_line_breaks() -> None:
    _, [p] = load_documents("a: 1\r\nb: 2\rc: \x07\n", "x.yaml")
    assert str(p) == "x.yaml:3: character '\\x07' is not allowed in YAML"


def test_kind_that_is_a_mapping_is_reported(repo: Path) -> None:
    # `kind not in KINDS` raised TypeError: unhashable type: 'dict'
    (repo / "environments" / "k.yaml").write_text("apiVersion: pipectl.dev/v1alpha1\nkind: {a: 1}\n")
    assert problems(repo) == [
        "environments/k.yaml:2: kind: unknown kind {'a': 1} (expected one of: PipelineRelease, Environment)"
    ]


def test_deep_nesting_is_reported_at_its_line() -> None:
    # was "x.yaml: YAML nesting is too deep" (no line), from a RecursionError
    text = "a: 1\nb:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 80 + "x\n"
    _, [p] = load_documents(text, "x.yaml")
    # k62 is on line 65 at depth 64 (the root mapping is depth 0); k63, a level deeper, is refused
    assert str(p) == f"x.yaml:{MAX_DEPTH + 2}: YAML nesting is deeper than {MAX_DEPTH} levels"


def test_nesting_past_the_recursion_limit_has_a_line() -> None:
    _, [p] = load_documents("a: 1\nb: " + "[" * 5000 + "]" * 5000 + "\n", "x.yaml")
    assert str(p) == f"x.yaml:2: YAML nesting is deeper than {MAX_DEPTH} levels"


def test_aliases_that_nest_too_deep_are_refused() -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 2)]
    _, [p] = load_documents("\n".join(lines) + "\n", "x.yaml")
    assert p.message == f"YAML nesting is deeper than {MAX_DEPTH} levels" and p.line >= 2


def test_tagged_scalar_that_does_not_convert(repo: Path) -> None:
    # ValueError out of PyYAML's int constructor; and an int of more digits than Python converts
    (repo / "environments" / "t.yaml").write_text(HEAD + "spec:\n  promotion: !!int 0xZZ\n")
    [p] = problems(repo)
    assert p.startswith("environments/t.yaml:6: spec.promotion: cannot read '0xZZ' as int: "), p
    _, [big] = load_documents("a:\n  b: " + "1" * 5000 + "\n", "x.yaml")
    assert big.line == 2 and big.path == "a.b" and big.message.startswith("cannot read '1111"), big


def test_deeply_nested_json_schema_names_the_file(repo: Path) -> None:
    (repo / "schemas" / "host_metric_event.avsc").write_text("[" * 100000 + "]" * 100000)
    assert problems(repo) == [
        f"{REL}:15: spec.schemas[0].path: schemas/host_metric_event.avsc: invalid JSON: nested too deeply"
    ]


def test_deeply_nested_python_file_names_the_file(repo: Path) -> None:
    (repo / "dags" / "host_metrics_daily.py").write_text("x = " + "-" * 100000 + "1\n")
    [p] = problems(repo)
    assert p.startswith(f"{REL}:54: spec.dags[0].path: dags/host_metrics_daily.py: Python file cannot be parsed: ")


def test_nul_byte_in_python_file_has_no_none_line(repo: Path) -> None:
    (repo / "dags" / "host_metrics_daily.py").write_text("x = 1\x00\n")
    assert problems(repo) == [
        f"{REL}:54: spec.dags[0].path: dags/host_metrics_daily.py: Python syntax error: "
        "source code string cannot contain null bytes"
    ]


def test_deeply_nested_sql_is_a_problem_on_its_line(repo: Path) -> None:
    # sqlglot's parser raised RecursionError out of load_repo
    n = 3000
    (repo / "transforms" / "host_metrics_daily.sql").write_text("SELECT\n  " + "(" * n + "1" + ")" * n + " AS one\n")
    found = problems(repo)
    assert "transforms/host_metrics_daily.sql:2: SQL nesting is too deep to parse" in found, found
    assert any(p.startswith(f"{REL}:58: spec.transforms[0].sql: ") for p in found), found
