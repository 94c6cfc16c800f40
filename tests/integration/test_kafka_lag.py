"""A ``kafkaLag`` provider on the stack's real Kafka: a real topic with ten records, a consumer group
per "version" that really consumed and committed (the canary's all ten, the baseline's four), read
through ``KafkaAdapter.committed_offsets`` and ``end_offsets`` by the engine's ``StageGateData``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from controller.adapters.kafka import KafkaAdapter
from controller.engine.gating import StageGateData
from controller.model.manifest import CanaryComparisonGate
from controller.model.reasons import Verdict
from controller.rollout.canary import evaluate_canary
from tests.integration.test_prometheus import _gate_ctx


def _consume(bootstrap: str, group: str, topic: str, n: int) -> None:
    """Read ``n`` records of partition 0 as ``group`` and commit where it stopped."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})  # fmt: skip
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = 0
        while got < n:
            msg = c.poll(10)
            assert msg is not None and msg.error() is None, msg and msg.error()
            got += 1
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_consumer_group_lag_judges_a_gate(kafka_bootstrap: str, unique_name: str) -> None:
    topic, admin = f"it-lag-{unique_name}", AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    kafka = KafkaAdapter(kafka_bootstrap)
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(10):
            p.produce(topic, value=str(i).encode())
        assert p.flush(30) == 0
        _consume(kafka_bootstrap, f"lag-{unique_name}-1.0.0", topic, 10)  # the canary: caught up
        _consume(kafka_bootstrap, f"lag-{unique_name}-0.9.0", topic, 4)  # the baseline: 6 behind
        assert kafka.committed_offsets(f"lag-{unique_name}-0.9.0") == {topic: {0: 4}}

        data = StageGateData(SimpleNamespace(kafka=kafka), store=None, current_version="1.0.0")  # type: ignore[arg-type]
        lag: dict[str, Any] = {"name": "lag", "kafkaLag": {"consumerGroup": f"lag-{unique_name}-{{{{version}}}}"}}

        def judge(**kw: Any) -> Any:
            gate = CanaryComparisonGate.model_validate(
                {"name": "lag", "type": "canaryComparison", "providers": [{**lag, **kw}]}
            )
            return evaluate_canary(gate, _gate_ctx("0.9.0"), data)

        strict = judge()
        assert strict.verdict is Verdict.FAIL, strict.message  # 0 vs 6: -100 %
        ev = strict.evidence["providers"][0]
        assert (ev["canary_total"], ev["baseline_total"]) == (0.0, 6.0)
        assert ev["baseline_lag_by_topic"] == {topic: 6}
        assert judge(allowance=6).verdict is Verdict.PASS
    finally:
        kafka.close()
        admin.delete_topics([topic])[topic].result(timeout=30)
