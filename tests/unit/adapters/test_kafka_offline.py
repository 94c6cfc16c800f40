"""Kafka adapter behaviour that needs no broker: refusals, wrong kinds, an unreachable cluster.

A real AdminClient pointed at a closed port stands in for an outage (no SDK is faked).
"""

from __future__ import annotations

import socket
import time

import pytest

from controller.adapters.base import Adapter
from controller.adapters.kafka import KafkaAdapter
from controller.model.errors import PermanentBackendError, TransientBackendError
from controller.model.reasons import Reason
from controller.plan.actions import Action, Op
from controller.plan.resources import ResourceKind, TopicResource


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def offline() -> KafkaAdapter:
    return KafkaAdapter(f"127.0.0.1:{_closed_port()}", timeout=0.5)


def test_is_an_adapter(offline: KafkaAdapter) -> None:
    assert isinstance(offline, Adapter)
    assert offline.kinds == frozenset({ResourceKind.TOPIC})


def test_refusal_is_never_applied(offline: KafkaAdapter) -> None:
    action = Action(
        op=Op.REFUSE, kind=ResourceKind.TOPIC, name="dev.x", reason="no",
        reason_code=str(Reason.PARTITION_DECREASE),
        desired=TopicResource(name="dev.x", partitions=1, replication_factor=1),
    )
    with pytest.raises(PermanentBackendError, match="PartitionDecrease"):
        offline.apply(action)
    assert offline.stats.total == 0


def test_other_kinds_are_rejected(offline: KafkaAdapter) -> None:
    with pytest.raises(PermanentBackendError):
        offline.observe(ResourceKind.TABLE, ["db.t"])
    assert offline.observe(ResourceKind.TOPIC, []) == {}
    assert offline.stats.total == 0


def test_unreachable_cluster_is_transient_and_retried(offline: KafkaAdapter) -> None:
    started = time.monotonic()
    with pytest.raises(TransientBackendError) as info:
        offline.observe(ResourceKind.TOPIC, ["dev.x"])
    assert info.value.__cause__ is not None  # raised from the SDK's error
    assert offline.stats.calls == {"describe_topics": 4}  # every attempt of the retry policy counted
    assert time.monotonic() - started < 15


def test_closed_adapter_refuses_calls(offline: KafkaAdapter) -> None:
    offline.close()
    offline.close()  # idempotent
    with pytest.raises(PermanentBackendError, match="closed"):
        offline.observe(ResourceKind.TOPIC, ["dev.x"])


def test_fenced_brokers_are_transient_a_too_large_replication_factor_is_not() -> None:
    # seen right after `devstack up --only kafka` in tests/faults/test_outage.py[kafka]: the stage
    # ended Failed (a halting phase: no retry until a new version) on a state that passes in seconds
    from confluent_kafka import KafkaError, KafkaException

    from controller.adapters.kafka import _classify

    fenced = KafkaError(
        KafkaError.INVALID_REPLICATION_FACTOR,
        "Unable to replicate the partition 1 time(s): All brokers are currently fenced.",
    )
    too_big = KafkaError(
        KafkaError.INVALID_REPLICATION_FACTOR,
        "The target replication factor of 3 cannot be reached because only 1 broker(s) are registered.",
    )
    assert isinstance(_classify("create_topics", KafkaException(fenced)), TransientBackendError)
    assert isinstance(_classify("create_topics", KafkaException(too_big)), PermanentBackendError)
