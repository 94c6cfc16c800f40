"""Per-stage overrides of a release (``spec.rollout.overrides.<stage>``): what a stage changes of the
release's topics and of its streaming jobs' Spark conf. Applied in ``controller.plan.desired``
(``_topics``, ``_streaming_jobs``); names checked against the release in ``controller.source.validate``.
Tests: ``tests/unit/plan/test_overrides.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from controller.model import identifiers as ids
from controller.model.base import Spec


def _strings(v: Any) -> Any:
    # YAML gives numbers and booleans for unquoted values; Kafka configs and Spark conf are strings.
    if isinstance(v, dict):
        return {k: (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in v.items()}
    return v


def _keys(v: dict[str, str], check: Any) -> dict[str, str]:
    for k in v:
        try:
            check(k)
        except ids.IdentifierError as e:
            raise ValueError(str(e)) from None
    return v


class TopicOverride(Spec):
    """A stage's changes to one of the release's topics; unset fields keep the topic's own."""

    partitions: int | None = Field(default=None, gt=0, le=100_000)
    replication_factor: int | None = Field(default=None, gt=0, le=32)
    config: dict[str, str] = Field(default_factory=dict, description="Merged over the topic's config.")

    @field_validator("config", mode="before")
    @classmethod
    def _config_values(cls, v: Any) -> Any:
        return _strings(v)

    @field_validator("config")
    @classmethod
    def _config_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return _keys(v, ids.check_kafka_config_key)


class StageOverride(Spec):
    """Per-stage overrides of a release: topics' partitions, replication factor and config, and Spark
    conf for every streaming job of the stage. A canary stage's topics are its target's (override
    them under the target); its own ``conf`` applies to the canary's jobs."""

    topics: dict[str, TopicOverride] = Field(
        default_factory=dict, description="By topic name (as in spec.topics, without the stage prefix)."
    )
    conf: dict[str, str] = Field(
        default_factory=dict, description="Spark conf merged over each streaming job's conf at this stage."
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_values(cls, v: Any) -> Any:
        return _strings(v)

    @field_validator("conf")
    @classmethod
    def _conf_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return _keys(v, ids.check_spark_conf_key)
