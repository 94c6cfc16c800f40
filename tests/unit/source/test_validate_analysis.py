"""`pipectl validate` of analysis templates: an unknown template, a missing or unknown argument, a
template on a canary Environment — each reported at file:line: field.path."""

from __future__ import annotations

from pathlib import Path

from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
GATE = """      - name: matches-baseline
        type: canaryComparison
        stages: [canary]
        tolerance: 0.02
"""
TEMPLATES = """  promotion: approval
  analysisTemplates:
    - name: latency-shape
      args:
        - name: metric
        - name: maxShift
          value: 0.1
      keys: [host]
      window: {column: window_start, length: 1m}
      metrics:
        - column: "{{args.metric}}"
          statistic: quantileShift
          threshold: "{{args.maxShift}}"
"""


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def edit(root: Path, old: str, new: str, file: str = REL) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def use_template(repo: Path, ref: str) -> None:
    edit(repo, "  promotion: approval\n", TEMPLATES, "environments/prod.yaml")
    edit(repo, GATE, GATE.replace("        tolerance: 0.02\n", ref))


def gate_line(repo: Path, text: str) -> int:
    lines = (repo / REL).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_a_template_with_its_arguments_is_valid(repo: Path) -> None:
    use_template(
        repo, "        template:\n          name: latency-shape\n          args: {metric: avg_value}\n"
    )
    assert problems(repo) == []
    gate = load_repo(repo).release("host-metrics").spec.rollout.gates[3]
    env = load_repo(repo).environment("prod")
    analysis = gate.analysis(env.spec.analysis_templates)  # type: ignore[union-attr]
    assert analysis.metrics is not None and analysis.metrics[0].column == "avg_value"
    assert analysis.metrics[0].threshold == 0.1


def test_unknown_template(repo: Path) -> None:
    use_template(repo, "        template:\n          name: latency\n")
    line = gate_line(repo, "name: latency")
    assert problems(repo) == [
        f"{REL}:{line}: spec.rollout.gates[3].template.name: unknown analysis template 'latency' "
        "(known: latency-shape) in Environment prod (stage canary)"
    ]


def test_missing_argument(repo: Path) -> None:
    use_template(repo, "        template:\n          name: latency-shape\n          args: {maxShift: 0.2}\n")
    line = gate_line(repo, "args: {maxShift")
    assert problems(repo) == [
        f"{REL}:{line}: spec.rollout.gates[3].template.args: missing argument 'metric' of analysis "
        "template 'latency-shape' in Environment prod (stage canary)"
    ]


def test_unknown_argument_and_bad_value(repo: Path) -> None:
    use_template(
        repo,
        "        template:\n          name: latency-shape\n          args:\n            metric: x\n            mertic: y\n",
    )
    line = gate_line(repo, "mertic: y")
    assert problems(repo) == [
        f"{REL}:{line}: spec.rollout.gates[3].template.args.mertic: analysis template 'latency-shape' has no "
        "argument 'mertic' (declared: metric, maxShift) in Environment prod (stage canary)"
    ]
    edit(repo, "            mertic: y\n", "            maxShift: lots\n")
    (p,) = problems(repo)
    assert p.startswith(f"{REL}:")
    assert (
        "spec.rollout.gates[3].template.args: analysis template 'latency-shape' with these arguments: " in p
    )
    assert "metrics[0].threshold" in p


def test_template_with_inline_fields_and_on_a_canary_environment(repo: Path) -> None:
    edit(repo, GATE, GATE + "        template: {name: x}\n")
    line = gate_line(repo, "template: {name: x}")
    (p,) = problems(repo)
    assert p.startswith(f"{REL}:")
    assert "a gate with a template takes tolerance from the template; remove them here" in p
    assert line > 0
    edit(
        repo,
        "  promotion: automatic\n",
        TEMPLATES.replace("approval", "automatic"),
        "environments/canary.yaml",
    )
    assert any(
        x.startswith("environments/canary.yaml:")
        and "spec.analysisTemplates: a canary stage uses the "
        "analysisTemplates of its target 'prod'; declare them there"
        in x
        for x in problems(repo)
    )


def test_a_placeholder_without_an_argument(repo: Path) -> None:
    edit(
        repo,
        "  promotion: approval\n",
        TEMPLATES.replace("{{args.maxShift}}", "{{args.max}}"),
        "environments/prod.yaml",
    )
    found = [p for p in problems(repo) if p.startswith("environments/prod.yaml:")]
    assert len(found) == 1
    assert (
        "spec.analysisTemplates[0]: {{args.max}} names no argument of the template (declared: metric, "
        "maxShift)" in found[0]
    )
