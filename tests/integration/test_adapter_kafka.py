"""Kafka adapter against the real broker of the local stack.

Every test works on its own uniquely named topics. Drift is made, and state is checked, with a
plain confluent-kafka AdminClient outside pipectl; the plan comes from the real diff rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException, Producer, TopicCollection
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from controller.adapters.kafka import KafkaAdapter
from controller.model.errors import PermanentBackendError
from controller.plan.actions import Action, DiffContext, Op, Reversibility
from controller.plan.resources import ResourceKind, TopicResource
from controller.plan.rules.kafka import diff_topic

pytestmark = pytest.mark.integration

TOPIC = ResourceKind.TOPIC
CHANGING = {"create_topics", "incremental_alter_configs", "create_partitions", "delete_topics"}
T = 15.0


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def adapter(kafka_bootstrap: str) -> Iterator[KafkaAdapter]:
    a = KafkaAdapter(kafka_bootstrap, timeout=T)
    yield a
    a.close()


@pytest.fixture
def sdk(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def new_topic(sdk: AdminClient, unique_name: str) -> Iterator[Callable[[], str]]:
    """Hands out fresh topic names; deletes whatever exists of them afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"it.kafka.{unique_name}.{len(made)}"
        made.append(name)
        return name

    yield make
    if made:
        for fut in sdk.delete_topics(made, operation_timeout=T).values():
            try:
                fut.result(timeout=T)
            except KafkaException:
                pass  # never created, or already deleted by the test


def sdk_create(sdk: AdminClient, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    sdk.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])[
        name
    ].result(timeout=T)
    wait_for(lambda: sdk_partitions(sdk, name) == partitions)


def sdk_partitions(sdk: AdminClient, name: str) -> int | None:
    try:
        desc = sdk.describe_topics(TopicCollection([name]))[name].result(timeout=T)
    except KafkaException:
        return None
    return len(desc.partitions)


def sdk_config(sdk: AdminClient, name: str) -> dict[str, str]:
    fut = sdk.describe_configs([ConfigResource(ResourceType.TOPIC, name)])
    entries = next(iter(fut.values())).result(timeout=T)
    return {k: e.value for k, e in entries.items()}


def sdk_set(sdk: AdminClient, name: str, key: str, value: str) -> None:
    res = ConfigResource(
        ResourceType.TOPIC, name, incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)]
    )
    next(iter(sdk.incremental_alter_configs([res]).values())).result(timeout=T)
    wait_for(lambda: sdk_config(sdk, name)[key] == value)


def wait_for(cond: Callable[[], bool], timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def plan(adapter: KafkaAdapter, desired: TopicResource, ctx: DiffContext | None = None) -> list[Action]:
    live = adapter.observe(TOPIC, [desired.name]).get(desired.name)
    assert live is None or isinstance(live, TopicResource)
    return diff_topic(desired, live, ctx or DiffContext())


def changing_calls(adapter: KafkaAdapter) -> dict[str, int]:
    return {k: v for k, v in adapter.stats.calls.items() if k in CHANGING}


# --- tests --------------------------------------------------------------------------------------


def test_create_converges_and_reapply_is_noop(adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]) -> None:
    name = new_topic()
    # A YAML float and a reordered list, as a manifest might hold them.
    desired = TopicResource(
        name=name, partitions=3, replication_factor=1,
        config={"retention.ms": "604800000.0", "cleanup.policy": "delete, compact"},
    )
    [create] = plan(adapter, desired)
    assert create.op is Op.CREATE

    assert adapter.apply(create).changed
    assert sdk_partitions(sdk, name) == 3
    live_cfg = sdk_config(sdk, name)
    assert live_cfg["retention.ms"] == "604800000"
    assert set(live_cfg["cleanup.policy"].split(",")) == {"compact", "delete"}

    adapter.stats.reset()
    assert plan(adapter, desired) == []  # converged, broker defaults are no noise
    assert adapter.stats.calls == {"describe_topics": 1, "describe_configs": 1}

    adapter.stats.reset()
    again = adapter.apply(create)
    assert not again.changed
    assert changing_calls(adapter) == {}
    assert sdk_partitions(sdk, name) == 3
    assert sdk_config(sdk, name) == live_cfg


def test_drift_outside_pipectl_is_reported_and_repaired(
    adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]
) -> None:
    name = new_topic()
    desired = TopicResource(name=name, partitions=2, replication_factor=1, config={"retention.ms": "604800000"})
    sdk_create(sdk, name, 2, {"retention.ms": "604800000"})
    assert plan(adapter, desired) == []

    sdk_set(sdk, name, "retention.ms", "3600000")  # someone edits the topic by hand

    [update] = plan(adapter, desired)
    assert update.op is Op.UPDATE
    assert update.reversibility is Reversibility.REVERSIBLE
    assert [str(c) for c in update.changes] == ["config.retention.ms: 3600000 → 604800000"]

    assert adapter.apply(update).changed
    assert sdk_config(sdk, name)["retention.ms"] == "604800000"
    assert plan(adapter, desired) == []

    adapter.stats.reset()
    assert not adapter.apply(update).changed
    assert changing_calls(adapter) == {}
    assert sdk_config(sdk, name)["retention.ms"] == "604800000"


def test_partition_increase_with_config_in_one_action(
    adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]
) -> None:
    name = new_topic()
    sdk_create(sdk, name, 2)
    desired = TopicResource(name=name, partitions=4, replication_factor=1, config={"max.message.bytes": "2097152"})

    [update] = plan(adapter, desired)
    assert update.op is Op.UPDATE
    assert update.reversibility is Reversibility.IRREVERSIBLE
    # 1048588 is the broker default, reported for a key the topic never set.
    assert [str(c) for c in update.changes] == ["partitions: 2 → 4", "config.max.message.bytes: 1048588 → 2097152"]

    assert adapter.apply(update).changed
    assert sdk_partitions(sdk, name) == 4
    assert sdk_config(sdk, name)["max.message.bytes"] == "2097152"
    assert plan(adapter, desired) == []

    adapter.stats.reset()
    assert not adapter.apply(update).changed
    assert changing_calls(adapter) == {}
    assert sdk_partitions(sdk, name) == 4


def test_partition_decrease_is_refused_and_leaves_topic_untouched(
    adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]
) -> None:
    name = new_topic()
    sdk_create(sdk, name, 4, {"retention.ms": "3600000"})
    before = sdk_config(sdk, name)
    desired = TopicResource(name=name, partitions=2, replication_factor=1, config={"retention.ms": "7200000"})

    [refusal] = plan(adapter, desired)
    assert refusal.op is Op.REFUSE
    assert refusal.reason_code == "PartitionDecrease"

    adapter.stats.reset()
    with pytest.raises(PermanentBackendError, match="PartitionDecrease"):
        adapter.apply(refusal)
    assert adapter.stats.total == 0
    assert sdk_partitions(sdk, name) == 4
    assert sdk_config(sdk, name) == before  # the config change beside it was not applied either


def test_replication_factor_change_is_refused(
    adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]
) -> None:
    name = new_topic()
    sdk_create(sdk, name, 1)
    desired = TopicResource(name=name, partitions=1, replication_factor=3)

    [refusal] = plan(adapter, desired)
    assert (refusal.op, refusal.reason_code) == (Op.REFUSE, "ReplicationFactorChange")
    with pytest.raises(PermanentBackendError):
        adapter.apply(refusal)
    live = adapter.observe(TOPIC, [name])[name]
    assert isinstance(live, TopicResource)
    assert (live.partitions, live.replication_factor) == (1, 1)


def test_delete_needs_approval(adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]) -> None:
    name = new_topic()
    sdk_create(sdk, name, 1)
    live = adapter.observe(TOPIC, [name])[name]
    assert isinstance(live, TopicResource)

    [refusal] = diff_topic(None, live, DiffContext(prune=True))
    assert (refusal.op, refusal.reason_code) == (Op.REFUSE, "DeleteNotApproved")
    with pytest.raises(PermanentBackendError):
        adapter.apply(refusal)
    assert sdk_partitions(sdk, name) == 1  # still there

    [delete] = diff_topic(None, live, DiffContext(prune=True, allow_delete=frozenset({name})))
    assert (delete.op, delete.reversibility) == (Op.DELETE, Reversibility.DESTRUCTIVE)
    assert adapter.apply(delete).changed
    assert sdk_partitions(sdk, name) is None
    assert adapter.observe(TOPIC, [name]) == {}

    adapter.stats.reset()
    assert not adapter.apply(delete).changed
    assert changing_calls(adapter) == {}


def test_observe_is_batched_and_never_creates(
    adapter: KafkaAdapter, sdk: AdminClient, new_topic: Callable[[], str]
) -> None:
    present = [new_topic() for _ in range(3)]
    absent = [new_topic() for _ in range(2)]
    for n in present:
        sdk_create(sdk, n, 1)

    adapter.stats.reset()
    live = adapter.observe(TOPIC, present + absent)
    assert sorted(live) == sorted(present)
    assert adapter.stats.calls == {"describe_topics": 1, "describe_configs": 1}
    for r in live.values():
        assert isinstance(r, TopicResource)
        assert r.config["cleanup.policy"] == "delete"  # broker defaults are reported too
    assert all(sdk_partitions(sdk, n) is None for n in absent)


def test_offsets(adapter: KafkaAdapter, sdk: AdminClient, kafka_bootstrap: str, new_topic: Callable[[], str]) -> None:
    name = new_topic()
    sdk_create(sdk, name, 2)
    assert adapter.end_offsets(name) == {0: 0, 1: 0}

    base = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):  # partition 0: five records at base+0..4 s; partition 1: five at base+10..14 s
        p = 0 if i < 5 else 1
        producer.produce(name, value=b"x", partition=p, timestamp=base + i * 1000 + (5000 if p else 0))
    assert producer.flush(T) == 0

    assert adapter.end_offsets(name) == {0: 5, 1: 5}
    assert adapter.offsets_for_times(name, base + 2000) == {0: 2, 1: 0}
    assert adapter.offsets_for_times(name, base + 12_000) == {0: 5, 1: 2}  # none that late in p0: its end
    assert adapter.offsets_for_times(name, base + 3_600_000) == {0: 5, 1: 5}
