"""The Kafka scope read keeps every config value the broker reports, sharing equal strings.

The AdminClient is replaced by a stand-in that answers ``list_topics`` and ``describe_configs``
with real ``ConfigEntry`` objects, each built from new ``str`` objects as the SDK does.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from confluent_kafka.admin import ConfigEntry, ConfigSource  # type: ignore[attr-defined]

from controller.adapters.kafka import KafkaAdapter
from controller.plan.actions import DiffContext
from controller.plan.resources import ResourceKind, TopicResource
from controller.plan.rules.kafka import diff_topic

_REPORTED = {
    "a.events": {"retention.ms": "604800000", "cleanup.policy": "delete", "sasl.secret": None},
    "b.events": {"retention.ms": "86400000", "cleanup.policy": "delete"},
}


def _fresh(text: str) -> str:
    return "".join(list(text))  # an equal but distinct object


def _done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result(value)
    return f


class _Admin:
    def list_topics(self, timeout: float | None = None) -> Any:
        parts = {0: SimpleNamespace(id=0, replicas=[1])}
        return SimpleNamespace(topics={n: SimpleNamespace(error=None, partitions=parts) for n in _REPORTED})

    def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
        return {
            r: _done(
                {
                    _fresh(k): ConfigEntry(
                        _fresh(k), None if v is None else _fresh(v), source=ConfigSource.DEFAULT_CONFIG
                    )
                    for k, v in _REPORTED[r.name].items()
                }
            )
            for r in resources
        }


def test_scope_keeps_every_reported_value_and_shares_equal_strings() -> None:
    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)
    adapter._admin = _Admin()
    live = adapter.observe_scope("topics")
    a, b = (live[(ResourceKind.TOPIC, n)] for n in _REPORTED)
    assert isinstance(a, TopicResource) and isinstance(b, TopicResource)
    # sensitive values (None) are left out, as before; every other value is kept
    assert a.config == {"retention.ms": "604800000", "cleanup.policy": "delete"}
    assert b.config == {"retention.ms": "86400000", "cleanup.policy": "delete"}
    (ka, va), (kb, vb) = (next(k for k in t.config.items() if k[0] == "cleanup.policy") for t in (a, b))
    assert ka is kb and va is vb
    desired = TopicResource(name="a.events", partitions=1, replication_factor=1, config={"retention.ms": "6.048E+8"})
    assert diff_topic(desired, a, DiffContext()) == []
