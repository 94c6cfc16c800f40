"""Validation of canary analysis templates: an Environment's ``analysisTemplates`` and the
canaryComparison gates that reference them (``template: {name, args}``); and of the gates'
``providers`` (a ``kafkaLag`` job must be a streaming job of the release).

A gate's template is looked up, at every stage the gate runs at, in that stage's Environment (a
canary stage: its target's, as ``plan.desired.stage_context`` does for endpoints). An unknown
template, a missing or unknown argument, or arguments that make the template invalid are reported
at the gate's ``template`` field; templates declared on a canary Environment (never used) at theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.model.analysis import TemplateError
from controller.model.errors import Problem
from controller.model.manifest import CanaryComparisonGate, Environment, PipelineRelease

Add = Callable[[tuple[str | int, ...], str], None]


def check_environment_templates(env: Environment, file: str, line: Callable[..., int]) -> list[Problem]:
    """Templates on a canary Environment would be ignored: it uses its target's."""
    if env.spec.canary_of is None or not env.spec.analysis_templates:
        return []
    path = ("spec", "analysisTemplates")
    return [
        Problem(
            file,
            line(*path),
            "spec.analysisTemplates",
            f"a canary stage uses the analysisTemplates of its target {env.spec.canary_of!r}; "
            "declare them there",
        )
    ]


def check_gate_templates(environments: dict[str, Any], rel: PipelineRelease, add: Add) -> None:
    """Every template reference resolves at every stage its gate runs at.

    ``environments`` maps names to loaded objects whose ``obj`` is the ``Environment``. Inline
    ``providers`` are checked too (``check_gate_providers``).
    """
    check_gate_providers(rel, add)
    stages = rel.spec.rollout.stages
    for i, gate in enumerate(rel.spec.rollout.gates):
        if not isinstance(gate, CanaryComparisonGate) or gate.template is None:
            continue
        seen: set[str] = set()
        for stage in gate.stages or stages:
            env = _effective(environments, stage)
            if env is None or env.name in seen:
                continue
            seen.add(env.name)
            where = "Environment " + env.name + (f" (stage {stage})" if env.name != stage else "")
            try:
                resolved = gate.analysis(env.spec.analysis_templates)
            except TemplateError as e:
                add(("spec", "rollout", "gates", i, "template", *_path(e.field)), f"{e} in {where}")
                continue
            jobs = {j.name for j in rel.spec.streaming_jobs}
            for m in resolved.providers or []:
                if m.kafka_lag is not None and m.kafka_lag.job is not None and m.kafka_lag.job not in jobs:
                    add(
                        ("spec", "rollout", "gates", i, "template", "name"),
                        f"analysis template {gate.template.name!r} ({where}): provider {m.name}: kafkaLag "
                        f"job {m.kafka_lag.job!r} is no streaming job of this release",
                    )


def _effective(environments: dict[str, Any], stage: str) -> Environment | None:
    loaded = environments.get(stage)
    env = getattr(loaded, "obj", None)
    if not isinstance(env, Environment):
        return None
    if env.spec.canary_of is not None:
        target = getattr(environments.get(env.spec.canary_of), "obj", None)
        return target if isinstance(target, Environment) else None
    return env


def _path(field: str) -> tuple[str, ...]:
    # "name", "args", "args.metric"; a field inside the template body is reported at "args"
    head, _, rest = field.partition(".")
    if head in ("name", "args"):
        return (head, rest) if head == "args" and rest else (head,)
    return ("args",)


def check_gate_providers(rel: PipelineRelease, add: Add) -> None:
    """A canaryComparison gate's ``kafkaLag`` provider names a streaming job of the release."""
    jobs = {j.name for j in rel.spec.streaming_jobs}
    for i, gate in enumerate(rel.spec.rollout.gates):
        if not isinstance(gate, CanaryComparisonGate):
            continue
        for k, m in enumerate(gate.providers or []):
            if m.kafka_lag is not None and m.kafka_lag.job is not None and m.kafka_lag.job not in jobs:
                add(
                    ("spec", "rollout", "gates", i, "providers", k, "kafkaLag", "job"),
                    f"{m.kafka_lag.job!r} is no streaming job of this release "
                    f"(streamingJobs: {', '.join(sorted(jobs)) or 'none'})",
                )
