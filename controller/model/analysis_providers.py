"""Metric providers of a ``canaryComparison`` gate besides the tables: ``providers``.

Each entry measures one number for the canary and one for the baseline and compares them like a
``relativeTotal`` table metric (``controller.rollout.canary_providers``):

- ``prometheus: {query}`` — a PromQL instant query, evaluated at the gate's time; ``{{version}}``
  is replaced by the side's version, ``{{stage}}`` by the stage (``{{args.NAME}}`` by a template's
  argument, as everywhere in a template). A vector result counts as the sum of its series.
- ``kafkaLag: {job}`` — the consumer lag in records of the side's deployment of a streaming job of
  the release: its source topics' end offsets minus the offsets its last progress processed
  (``controller.rollout.health.job_health``, the figure streamingHealth judges);
  ``kafkaLag: {consumerGroup}`` the same for a Kafka consumer group's committed offsets (the
  group's name may hold ``{{version}}``/``{{stage}}``).
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from controller.model.base import ResourceName, Spec

SIDE_PLACEHOLDERS = ("version", "stage")
_SIDE = re.compile(r"\{\{\s*(version|stage)\s*\}\}")


def substitute_side(query: str, version: str, stage: str) -> str:
    """``query`` with ``{{version}}`` and ``{{stage}}`` replaced."""
    return _SIDE.sub(lambda m: version if m.group(1) == "version" else stage, query)


class PrometheusQuery(Spec):
    query: str = Field(
        min_length=1,
        description="PromQL instant query; {{version}} is the compared side's version, {{stage}} the stage.",
    )


class KafkaLag(Spec):
    job: str | None = Field(
        default=None, description="A streaming job of the release (its name in spec.streamingJobs)."
    )
    consumer_group: str | None = Field(
        default=None,
        description="Or a Kafka consumer group ({{version}}/{{stage}} substituted per side): its "
        "committed offsets.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> KafkaLag:
        if (self.job is None) == (self.consumer_group is None):
            raise ValueError("set exactly one of job or consumerGroup")
        return self


class ProviderMetric(Spec):
    name: ResourceName = Field(description="Names the metric in the verdict and the evidence.")
    prometheus: PrometheusQuery | None = None
    kafka_lag: KafkaLag | None = None
    threshold: float | None = Field(
        default=None,
        ge=0,
        description="Largest allowed |canary - baseline| / |baseline| (default: the gate's tolerance).",
    )
    allowance: float = Field(
        default=0.0,
        ge=0,
        description="An absolute difference up to this passes whatever the relative one (e.g. a few "
        "records of lag against a baseline at zero).",
    )

    @model_validator(mode="after")
    def _one_provider(self) -> ProviderMetric:
        given = [
            n for n, v in (("prometheus", self.prometheus), ("kafkaLag", self.kafka_lag)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "set exactly one provider: prometheus or kafkaLag"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class TemplateProviderMetric(Spec):
    """``ProviderMetric`` before argument substitution (a number may be ``{{args.NAME}}``)."""

    name: str
    prometheus: PrometheusQuery | None = None
    kafka_lag: KafkaLag | None = None
    threshold: float | str | None = None
    allowance: float | str = 0.0
