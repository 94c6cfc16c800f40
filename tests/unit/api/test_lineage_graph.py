"""The board's lineage graph from audit records: topics -> jobs -> tables -> views -> transforms -> DAGs."""

from __future__ import annotations

from typing import Any

from controller.api.lineage_graph import lineage_graph

REC: dict[str, Any] = {
    "stage": "prod", "version": "1.0.0",
    "actions": ["Topic/t.a/create: done", "StreamingJob/prod-r-agg-v1-0-0/create: done",
                "Table/db.agg_1m__v1_0_0/create: done", "View/db.agg/create: done",
                "Transform/db.daily/create: done", "Dag/daily__prod/create: waiting"],
    "lineage": {"inputs": ["kafka:t.a", "hive:db.agg"],
                "outputs": ["hive:db.agg_1m__v1_0_0", "hive:db.agg", "hive:db.daily"],
                "columns": {"hive:db.daily.n": ["hive:db.agg.n"], "hive:db.daily.day": ["hive:db.agg.dt"]}},
}


def _edges(g: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["from"], e["to"]): e for e in g["edges"]}


def test_the_chain_from_topic_to_dag() -> None:
    g = lineage_graph([REC], "prod")
    kinds = {n["id"]: n["kind"] for n in g["nodes"]}
    assert kinds == {"topic:t.a": "topic", "job:prod-r-agg-v1-0-0": "job", "table:db.agg_1m__v1_0_0": "table",
                     "view:db.agg": "view", "transform:db.daily": "transform", "dag:daily__prod": "dag"}
    e = _edges(g)
    assert set(e) == {("topic:t.a", "job:prod-r-agg-v1-0-0"), ("job:prod-r-agg-v1-0-0", "table:db.agg_1m__v1_0_0"),
                      ("table:db.agg_1m__v1_0_0", "view:db.agg"), ("view:db.agg", "transform:db.daily"),
                      ("transform:db.daily", "dag:daily__prod")}
    assert sorted(e[("view:db.agg", "transform:db.daily")]["columns"]) == ["day", "n"]
    # the view is not named after the table, and DAGs do not name their transforms: said so
    assert e[("table:db.agg_1m__v1_0_0", "view:db.agg")]["inferred"] is True
    assert e[("transform:db.daily", "dag:daily__prod")]["inferred"] is True
    assert e[("topic:t.a", "job:prod-r-agg-v1-0-0")]["inferred"] is False


def test_a_stage_without_records_is_empty_and_other_stages_do_not_leak() -> None:
    assert lineage_graph([REC], "dev") == {"stage": "dev", "version": None, "nodes": [], "edges": []}


def test_deleted_resources_are_left_out_and_two_jobs_make_topic_edges_inferred() -> None:
    later = {"stage": "prod", "version": "1.0.0",
             "actions": ["StreamingJob/prod-r-b-v1-0-0/create: done", "Dag/daily__prod/delete: done"],
             "lineage": {"inputs": [], "outputs": [], "columns": {}}}
    g = lineage_graph([REC, later], "prod")
    ids = {n["id"] for n in g["nodes"]}
    assert "dag:daily__prod" not in ids and "job:prod-r-b-v1-0-0" in ids
    e = _edges(g)
    assert e[("topic:t.a", "job:prod-r-b-v1-0-0")]["inferred"] is True
    assert ("job:prod-r-b-v1-0-0", "table:db.agg_1m__v1_0_0") in e  # same version suffix
