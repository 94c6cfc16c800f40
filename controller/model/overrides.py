"""Per-stage overrides of a release (``spec.rollout.overrides.<stage>``): what a stage changes of the
release's topics and of its streaming jobs' Spark conf. Applied in ``controller.plan.desired``
(``_topics``, ``_streaming_jobs``); names checked against the release in ``controller.source.validate``.
Tests: ``tests/unit/plan/test_overrides.py``.
"""

from __future__ import annotations

from pydantic import Field

from controller.model.base import KafkaConfig, SparkConf, Spec


class TopicOverride(Spec):
    """A stage's changes to one of the release's topics; unset fields keep the topic's own."""

    partitions: int | None = Field(default=None, gt=0, le=100_000)
    replication_factor: int | None = Field(default=None, gt=0, le=32)
    config: KafkaConfig = Field(default_factory=dict, description="Merged over the topic's config.")


class StageOverride(Spec):
    """Per-stage overrides of a release: topics' partitions, replication factor and config, and Spark
    conf for every streaming job of the stage. A canary stage's topics are its target's (override
    them under the target); its own ``conf`` applies to the canary's jobs."""

    topics: dict[str, TopicOverride] = Field(
        default_factory=dict, description="By topic name (as in spec.topics, without the stage prefix)."
    )
    conf: SparkConf = Field(
        default_factory=dict, description="Spark conf merged over each streaming job's conf at this stage."
    )
