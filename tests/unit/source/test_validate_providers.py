"""`pipectl validate` of a canaryComparison gate's ``providers`` and an Environment's ``prometheus``
endpoint: each problem at file:line: field.path; a template's providers resolve with their
arguments and keep ``{{version}}``/``{{stage}}`` for the gate to fill in per side."""

from __future__ import annotations

from pathlib import Path

from controller.source.validate import load_repo
from tests.unit.source.test_validate_analysis import GATE, REL, edit, gate_line, problems


def with_providers(repo: Path, providers: str) -> None:
    edit(repo, GATE, GATE + "        providers:\n" + providers)


def test_prometheus_and_kafka_lag_providers_are_valid(repo: Path) -> None:
    with_providers(
        repo,
        "          - name: errors\n"
        "            prometheus: {query: 'sum(rate(x{version=\"{{version}}\"}[1m]))'}\n"
        "            threshold: 0.1\n"
        "          - name: lag\n"
        "            kafkaLag: {job: host-metrics-agg}\n"
        "            allowance: 50\n",
    )
    assert problems(repo) == []
    gate = load_repo(repo).release("host-metrics").spec.rollout.gates[3]
    providers = gate.providers  # type: ignore[union-attr]
    assert providers is not None and providers[0].prometheus is not None
    assert providers[0].prometheus.query == 'sum(rate(x{version="{{version}}"}[1m]))'
    assert providers[1].kafka_lag is not None and providers[1].allowance == 50


def test_unknown_kafka_lag_job(repo: Path) -> None:
    with_providers(repo, "          - name: lag\n            kafkaLag: {job: nope}\n")
    line = gate_line(repo, "kafkaLag: {job: nope}")
    assert problems(repo) == [
        f"{REL}:{line}: spec.rollout.gates[3].providers[0].kafkaLag.job: 'nope' is no streaming job of "
        "this release (streamingJobs: host-metrics-agg)"
    ]


def test_a_provider_needs_exactly_one_source(repo: Path) -> None:
    with_providers(repo, "          - name: both\n            kafkaLag: {job: host-metrics-agg}\n"
                   "            prometheus: {query: up}\n")  # fmt: skip
    found = problems(repo)
    assert len(found) == 1
    assert "spec.rollout.gates[3].providers[0]: set exactly one provider: prometheus or kafkaLag " \
           "(got prometheus, kafkaLag)" in found[0] and found[0].startswith(f"{REL}:")


def test_a_template_provider_takes_its_arguments(repo: Path) -> None:
    edit(
        repo,
        "  promotion: approval\n",
        "  promotion: approval\n  prometheus: {url: 'http://127.0.0.1:9090'}\n  analysisTemplates:\n"
        "    - name: error-rate\n      args: [{name: job}, {name: max, value: 0.2}]\n"
        "      providers:\n        - name: errors\n"
        "          prometheus: {query: 'rate(e{job=\"{{args.job}}\",v=\"{{version}}\"}[1m])'}\n"
        "          threshold: '{{args.max}}'\n",
        "environments/prod.yaml",
    )
    edit(repo, GATE, GATE.replace("        tolerance: 0.02\n", "        template: {name: error-rate, args: {job: agg}}\n"))
    assert problems(repo) == []
    snap = load_repo(repo)
    env = snap.environment("prod")
    assert env is not None and env.spec.prometheus is not None
    assert env.spec.prometheus.url == "http://127.0.0.1:9090"
    gate = snap.release("host-metrics").spec.rollout.gates[3]
    analysis = gate.analysis(env.spec.analysis_templates)  # type: ignore[union-attr]
    assert analysis.providers is not None and analysis.providers[0].threshold == 0.2
    assert analysis.providers[0].prometheus is not None
    assert analysis.providers[0].prometheus.query == 'rate(e{job="agg",v="{{version}}"}[1m])'


def test_a_template_provider_with_an_unknown_job(repo: Path) -> None:
    edit(
        repo,
        "  promotion: approval\n",
        "  promotion: approval\n  analysisTemplates:\n    - name: lagging\n"
        "      providers: [{name: lag, kafkaLag: {job: nope}}]\n",
        "environments/prod.yaml",
    )
    edit(repo, GATE, GATE.replace("        tolerance: 0.02\n", "        template: {name: lagging}\n"))
    line = gate_line(repo, "template: {name: lagging}")
    assert problems(repo) == [
        f"{REL}:{line}: spec.rollout.gates[3].template.name: analysis template 'lagging' (Environment prod "
        "(stage canary)): provider lag: kafkaLag job 'nope' is no streaming job of this release"
    ]


def test_prometheus_endpoint_must_be_a_url(repo: Path) -> None:
    edit(repo, "  promotion: approval\n", "  promotion: approval\n  prometheus: {url: 'localhost:9090'}\n",
         "environments/prod.yaml")  # fmt: skip
    line = next(i for i, t in enumerate((repo / "environments/prod.yaml").read_text().splitlines(), 1)
                if "prometheus:" in t)  # fmt: skip
    assert (
        f"environments/prod.yaml:{line}: spec.prometheus.url: expected an http:// or https:// URL, "
        "got 'localhost:9090'"
    ) in problems(repo)


def test_kafka_lag_takes_a_job_or_a_consumer_group(repo: Path) -> None:
    with_providers(repo, "          - name: lag\n            kafkaLag: {consumerGroup: 'agg-{{version}}'}\n")
    assert problems(repo) == []
    edit(repo, "kafkaLag: {consumerGroup: 'agg-{{version}}'}", "kafkaLag: {}")
    found = problems(repo)
    assert len(found) == 1 and "providers[0].kafkaLag: set exactly one of job or consumerGroup" in found[0]
