"""`-o`: table, wide, json, yaml, name, jsonpath=…, custom-columns=…; anything else exits 2 with the
formats the verb takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.cli.output import OutputError, custom_columns, evaluate, parse_output
from tests.unit.cli.clikit import invoke, status, store_with

DATA = {
    "kind": "PipelineReleaseList",
    "items": [
        {"metadata": {"name": "a"}, "status": {"version": "1.0.0", "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}},
        {"metadata": {"name": "b"}, "status": {"version": "2.0.0", "conditions": []}},
    ],
}


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PIPECTL_CONFIG", str(tmp_path / "config.yaml"))
    return store_with(tmp_path / "s.db", {
        "alpha": status("1.0.0", {"dev": ("1.0.0", "Succeeded"), "prod": ("1.0.0", "Succeeded")}),
        "beta": status("2.0.0", {"dev": ("2.0.0", "Verifying")}, ready="False"),
    })


def test_parse_output() -> None:
    assert parse_output("").kind == "table" and parse_output("wide").kind == "wide"
    assert parse_output("jsonpath={.items[*].metadata.name}").arg == "{.items[*].metadata.name}"
    assert parse_output("custom-columns=N:.metadata.name").kind == "custom-columns"
    for bad in ("xml", "json=1", "jsonpath=", "custom-columns=", "custom-columns=NAME", "jsonpath={.a[}",
                "jsonpath={range .items[*]}{.x}"):
        with pytest.raises(OutputError):
            parse_output(bad)
    with pytest.raises(OutputError, match="use one of table, json"):
        parse_output("yaml", ("table", "json"))


def test_jsonpath_templates() -> None:
    assert evaluate("{.items[*].metadata.name}", DATA) == "a b"
    assert evaluate(".items[0].status.version", DATA) == "1.0.0"  # no braces: one expression
    assert evaluate('{range .items[*]}{.metadata.name}{"\\t"}{.status.version}{"\\n"}{end}', DATA) == (
        "a\t1.0.0\nb\t2.0.0\n"
    )
    assert evaluate('{.items[0].status.conditions[?(@.type=="Ready")].status}', DATA) == "True"
    assert evaluate("names: {.items[*].metadata.name}!", DATA) == "names: a b!"
    assert evaluate("{.items[1].status}", DATA) == '{"version":"2.0.0","conditions":[]}'
    assert evaluate("{.missing}", DATA) == ""


def test_custom_columns() -> None:
    out = custom_columns('NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status', DATA["items"])
    assert out.splitlines() == ["NAME   READY", "a      True", "b      <none>"]


def test_get_releases_in_every_format(state: str) -> None:
    r = invoke("get", "releases", "--state", state)
    assert r.exit_code == 0 and r.stdout.split("\n")[0].split() == [
        "NAME", "VERSION", "STAGE", "PHASE", "READY", "GATES", "AGE"]
    wide = invoke("get", "releases", "--state", state, "-o", "wide").stdout
    assert "DEV" in wide.splitlines()[0] and "1.0.0/Succeeded" in wide
    assert [i["metadata"]["name"] for i in json.loads(invoke("get", "releases", "--state", state,
                                                            "-o", "json").stdout)["items"]] == ["alpha", "beta"]
    one = yaml.safe_load(invoke("get", "release", "beta", "--state", state, "-o", "yaml").stdout)
    assert one["kind"] == "PipelineRelease" and one["status"]["version"] == "2.0.0"
    assert invoke("get", "releases", "--state", state, "-o", "name").stdout.split() == [
        "pipelinerelease/alpha", "pipelinerelease/beta"]
    r = invoke("get", "releases", "--state", state, "-o",
               'jsonpath={range .items[*]}{.metadata.name}={.status.stages.dev.phase}{"\\n"}{end}')
    assert r.stdout == "alpha=Succeeded\nbeta=Verifying\n"
    r = invoke("get", "releases", "--state", state, "-o", "custom-columns=NAME:.metadata.name,V:.status.version")
    assert r.stdout.splitlines() == ["NAME    V", "alpha   1.0.0", "beta    2.0.0"]


def test_unknown_format_exits_2_with_the_list(state: str) -> None:
    r = invoke("get", "releases", "--state", state, "-o", "xml")
    assert r.exit_code == 2
    assert ('unknown output format "xml": use one of table, wide, json, yaml, name, jsonpath=TEMPLATE, '
            "custom-columns=SPEC") in r.stderr
    r = invoke("history", "alpha", "--state", state, "-o", "name")
    assert r.exit_code == 2 and "use one of table, json, yaml, jsonpath=TEMPLATE, custom-columns=SPEC" in r.stderr
    r = invoke("token", "list", "--state", state, "-o", "yaml")
    assert r.exit_code == 2 and "use one of table, json" in r.stderr
    r = invoke("get", "releases", "--state", state, "-o", "jsonpath={.items[}")
    assert r.exit_code == 2 and "bad JSONPath" in r.stderr


def test_history_formats(state: str, tmp_path: Path) -> None:
    from controller.store.db import Store

    store = Store(state)
    store.run_start("r1", "alpha", "dev", "1.0.0", "deploy", "abc")
    store.run_end("r1", "succeeded", None, "")
    r = invoke("history", "alpha", "--state", state, "-o", "custom-columns=RUN:.run_id,OUTCOME:.outcome")
    assert r.exit_code == 0 and r.stdout.splitlines() == ["RUN   OUTCOME", "r1    succeeded"]
    assert invoke("history", "alpha", "--state", state, "-o", "jsonpath={[0].version}").stdout == "1.0.0\n"
