"""The Kafka scope read keeps every config value the broker reports, sharing equal strings.

The AdminClient is replaced by a stand-in that answers ``list_topics`` and ``describe_configs``
with real ``ConfigEntry`` objects, each built from new ``str`` objects as the SDK does.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import confluent_kafka.admin as sdk_admin
import pytest
from confluent_kafka.admin import ConfigEntry, ConfigSource  # type: ignore[attr-defined]

from controller.adapters import kafka as kafka_module
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


class _LateAdmin(_Admin):
    """Builds each answer the way the SDK's C code does: when the response arrives (here, when the
    adapter asks for the result), looking ``confluent_kafka.admin.ConfigEntry`` up by name."""

    def __init__(self) -> None:
        self.built: set[str] = set()

    def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
        admin = self

        class _Late(Future[Any]):
            def __init__(self, topic: str) -> None:
                super().__init__()
                self.topic = topic

            def result(self, timeout: float | None = None) -> Any:
                cls = sdk_admin.ConfigEntry
                admin.built.add(cls.__name__)
                return {k: cls(name=k, value=v, source=ConfigSource.DEFAULT_CONFIG, is_default=True,
                               synonyms={}) for k, v in _REPORTED[self.topic].items()}

        return {r: _Late(r.name) for r in resources}


def test_described_entries_are_built_lean_and_the_sdk_name_is_put_back() -> None:
    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)
    admin = _LateAdmin()
    adapter._admin = admin
    live = adapter.observe_scope("topics")
    assert admin.built == {"LiveEntry"}  # never the SDK's nine-attribute ConfigEntry
    assert sdk_admin.ConfigEntry is ConfigEntry  # put back once the answers are read
    a = live[(ResourceKind.TOPIC, "a.events")]
    assert isinstance(a, TopicResource)
    assert a.config == {"retention.ms": "604800000", "cleanup.policy": "delete"}


def test_the_sdk_name_is_put_back_and_the_heap_trimmed_when_the_read_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[bool] = []
    monkeypatch.setattr(kafka_module.memory, "trim", lambda: trims.append(True) or True)
    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)

    class _Broken(_Admin):
        def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
            raise RuntimeError("broker gone")

    adapter._admin = _Broken()
    with pytest.raises(Exception, match="broker gone"):
        adapter._describe_configs.__wrapped__(adapter, ["a.events"])  # type: ignore[attr-defined]
    assert sdk_admin.ConfigEntry is ConfigEntry
    assert trims == [True]


def test_equal_entries_are_built_once_across_topics() -> None:
    """The broker defaults every topic reports are one object each, not one per topic."""
    admin = _LateAdmin()
    built: list[Any] = []

    class _Keep(_LateAdmin):
        def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
            answers = {r: f.result() for r, f in admin.describe_configs(resources, request_timeout).items()}
            built.extend(answers.values())
            return {r: _done(a) for r, a in answers.items()}

    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)
    adapter._admin = _Keep()
    adapter.observe_scope("topics")
    a, b = built
    assert a["cleanup.policy"] is b["cleanup.policy"]  # same name and value: one entry
    assert a["retention.ms"] is not b["retention.ms"] and a["retention.ms"].value == "604800000"


def test_configs_are_described_in_one_request_and_the_heap_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """One ``describe_configs`` for every topic whatever their number (issue #17), and the C heap
    the SDK's answer took is given back after it."""
    sizes: list[int] = []
    trims: list[bool] = []
    monkeypatch.setattr(kafka_module.memory, "trim", lambda: trims.append(True) or True)

    class _Counting(_Admin):
        def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
            sizes.append(len(resources))
            return super().describe_configs(resources, request_timeout)

    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)
    adapter._admin = _Counting()
    live = adapter.observe_scope("topics")
    assert sizes == [len(_REPORTED)] and adapter.stats.calls["describe_configs"] == 1
    assert {n for _, n in live} == set(_REPORTED)
    assert trims == [True]


def test_topics_with_equal_configs_share_one_map() -> None:
    both = {"retention.ms": "604800000", "cleanup.policy": "delete"}
    reported = {"a.events": both, "b.events": dict(both), "c.events": {**both, "retention.ms": "1"}}

    class _Same(_Admin):
        def list_topics(self, timeout: float | None = None) -> Any:
            parts = {0: SimpleNamespace(id=0, replicas=[1])}
            return SimpleNamespace(topics={n: SimpleNamespace(error=None, partitions=parts) for n in reported})

        def describe_configs(self, resources: list[Any], request_timeout: float | None = None) -> Any:
            return {r: _done({k: ConfigEntry(_fresh(k), _fresh(v)) for k, v in reported[r.name].items()})
                    for r in resources}

    adapter = KafkaAdapter("127.0.0.1:1", timeout=0.5)
    adapter._admin = _Same()
    live = adapter.observe_scope("topics")
    a, b, c = (live[(ResourceKind.TOPIC, n)] for n in reported)
    assert isinstance(a, TopicResource) and isinstance(b, TopicResource) and isinstance(c, TopicResource)
    assert a.config is b.config and a.config == both
    assert c.config == {**both, "retention.ms": "1"} and c.config is not a.config
    assert a == TopicResource(name="a.events", partitions=1, replication_factor=1, config=both)
