"""Kafka adapter: observes topics and applies one topic action at a time (confluent-kafka AdminClient).

The only module that imports ``confluent_kafka``. A pass observes topics in two batched round
trips whatever their number: one metadata request (``describe_topics``) and one
``describe_configs`` for the topics found. Live configs carry every value the broker reports,
defaults included; the rule compares only the keys a manifest sets.

``apply`` re-reads the topic before changing anything, so re-applying an action whose effect is
present makes no changing call. After a change it waits (up to ``timeout``) until a read shows the
effect, so the next observe of the pass sees it. It never deletes a topic unless the action is a
DELETE, which the rule emits only for approved names, or an approved REPLACE (a partition
decrease a person approved: ``controller.plan.approvals``): delete the topic, create it again.
SDK errors become ``TransientBackendError`` (retried with backoff) or ``PermanentBackendError``,
raised from the original.

Offsets for gates and replays (``end_offsets``, ``offsets_for_times``) use the admin
``ListOffsets`` call: one batched request, and no consumer group is joined or committed to.

Security (``KafkaSecurity``): ``security.protocol`` PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL,
SASL PLAIN/SCRAM with a user and a ``Secret`` password, a CA bundle for TLS.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass

import confluent_kafka.admin as sdk_admin
import structlog
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)

# confluent_kafka.admin documents these names but has no __all__, so mypy sees them as private.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from controller.adapters._retry import retrying
from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.kafka_entries import LiveEntry
from controller.adapters.kafka_security import KafkaSecurity
from controller.model.errors import BackendError, PermanentBackendError, TransientBackendError
from controller.obs import memory
from controller.plan.actions import Action, Op
from controller.plan.resources import Resource, ResourceKind, TopicResource
from controller.plan.rules.kafka import config_drift, wire_config_value

BACKEND = "kafka"
_log = structlog.get_logger(__name__)

# Errors worth retrying even when librdkafka does not flag them retriable.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.LEADER_NOT_AVAILABLE,
        # a topic just created: its partitions' leadership has not reached every broker yet
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NOT_CONTROLLER,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.THROTTLING_QUOTA_EXCEEDED,
    }
)
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class _TopicMeta:
    partitions: tuple[int, ...]
    replication_factor: int

    def resource(self, name: str, config: dict[str, str] | None = None) -> TopicResource:
        """The live topic. Built without validation (every value is typed here already), so that
        ``config`` stays the map ``_describe_configs`` shares between topics: live resources are
        frozen and nothing changes a live config in place."""
        return TopicResource.model_construct(
            name=name, partitions=len(self.partitions), replication_factor=self.replication_factor,
            config=config if config is not None else {},
        )


_ENTRY_CLASS = threading.Lock()


@contextmanager
def _lean_entries() -> Iterator[None]:
    """While held, ``describe_configs`` answers are built as ``LiveEntry``: the SDK's C code looks
    ``confluent_kafka.admin.ConfigEntry`` up each time it converts a response, on its own thread,
    before the futures complete; the name is put back once they have. Every other use of the name
    in this process (the incremental alter, this module only) takes the same lock."""
    with _ENTRY_CLASS:
        sdk_admin.ConfigEntry = LiveEntry  # type: ignore[attr-defined,assignment]
        try:
            yield
        finally:
            sdk_admin.ConfigEntry = ConfigEntry  # type: ignore[attr-defined]


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _fenced(err: KafkaError) -> bool:
    """A KRaft broker that has just (re)started is fenced until it has caught up with the metadata
    log; meanwhile the controller refuses to place replicas on it with INVALID_REPLICATION_FACTOR
    "All brokers are currently fenced" — a state that passes, unlike a replication factor larger
    than the cluster ("… cannot be reached because only 1 broker(s) are registered")."""
    return err.code() == KafkaError.INVALID_REPLICATION_FACTOR and "fenced" in (err.str() or "").lower()


def _classify(op: str, exc: KafkaException) -> BackendError:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        text = f"{op}: {err.name()}: {err.str()}"
        if err.retriable() or err.code() in _TRANSIENT_CODES or _fenced(err):
            return TransientBackendError(BACKEND, text)
        return PermanentBackendError(BACKEND, text)
    return PermanentBackendError(BACKEND, f"{op}: {exc}")


class KafkaAdapter:
    """Observe and apply ``Topic`` resources on one Kafka cluster."""

    kinds: frozenset[ResourceKind] = frozenset({ResourceKind.TOPIC})

    def __init__(
        self, bootstrap_servers: str, *, timeout: float = 10.0, security: KafkaSecurity | None = None
    ) -> None:
        self.stats = CallStats()
        self._timeout = timeout
        self.security = security or KafkaSecurity()
        self._admin = AdminClient(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": "pipectl",
                "socket.timeout.ms": int(timeout * 1000),
                **self.security.client_config(),
            },
            logger=logging.getLogger("confluent_kafka.admin"),
        )
        self._closed = False

    # --- Adapter protocol ----------------------------------------------------------------------

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        """Live topics among ``names``: one metadata read, then one config read for those found."""
        self._check_kind(kind)
        return dict(self._observe(names))

    def snapshot_scope(self, kind: ResourceKind, name: str) -> str | None:
        """Every topic is read in one scope (``engine.snapshot``)."""
        return "topics" if kind is ResourceKind.TOPIC else None

    def observe_scope(self, scope: str) -> dict[tuple[ResourceKind, str], Resource]:
        """Every (non-internal) topic of the cluster: one metadata read (partitions and replicas of
        all topics), then one config read over all of them."""
        if scope != "topics":
            raise PermanentBackendError(BACKEND, f"no Kafka scope {scope!r}")
        meta = self._describe_all()
        configs = self._describe_configs(sorted(meta)) if meta else {}
        return {(ResourceKind.TOPIC, n): m.resource(n, configs[n]) for n, m in meta.items() if n in configs}

    def apply(self, action: Action) -> ApplyResult:
        self._check_kind(action.kind)
        log = _log.bind(action=action.id)
        if action.op is Op.REFUSE or action.pending:  # a refusal, or awaiting approval
            raise PermanentBackendError(
                BACKEND,
                f"{action.id} is a refusal ({action.reason_code}) and cannot be applied: {action.reason}",
            )
        if action.op is Op.CREATE:
            result = self._create(action)
        elif action.op is Op.UPDATE:
            result = self._update(action)
        elif action.op is Op.DELETE:
            result = self._delete(action)
        elif action.op is Op.REPLACE and action.approved_by:
            result = self._recreate(action)
        else:
            raise PermanentBackendError(BACKEND, f"{action.id}: {action.op} is not supported for topics")
        log.info("kafka.apply", changed=result.changed, message=result.message)
        return result

    # --- extras for gates and replays ----------------------------------------------------------

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Log-end offset (high watermark) of each partition of ``topic``."""
        meta = self._meta_of(topic)
        return self._list_offsets(topic, meta.partitions, _LATEST)

    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose record timestamp is ``>= ts_ms``.

        A partition with no record that recent maps to its end offset: replaying from there reads
        only records that arrive later, which is what "from time T" means for it.
        """
        meta = self._meta_of(topic)
        found = self._list_offsets(topic, meta.partitions, OffsetSpec.for_timestamp(ts_ms))
        missing = [p for p, off in found.items() if off < 0]
        if missing:
            found.update(self._list_offsets(topic, tuple(missing), _LATEST))
        return found

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]:
        """Topic → partition → the offset consumer group ``group`` has committed (partitions it
        never committed are left out; an unknown group has none)."""
        self.stats.count("list_consumer_group_offsets")
        out: dict[str, dict[int, int]] = {}
        with self._sdk_errors("list_consumer_group_offsets"):
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout
            )
            for fut in futures.values():
                for tp in fut.result(timeout=self._timeout).topic_partitions or []:
                    if tp.offset >= 0:
                        out.setdefault(tp.topic, {})[tp.partition] = int(tp.offset)
        return out

    def list_topic_names(self, prefix: str = "") -> list[str]:
        """Names of the cluster's topics starting with ``prefix`` (internal topics excluded)."""
        return sorted(n for n in self._list_topics() if n.startswith(prefix) and not n.startswith("__"))

    def close(self) -> None:
        # The AdminClient has no close(); dropping it tears down its threads and sockets.
        if not self._closed:
            self._closed = True
            del self._admin

    # --- apply, one op each --------------------------------------------------------------------

    def _create(self, action: Action) -> ApplyResult:
        desired = _desired_topic(action)
        if self._describe_topics([desired.name]):
            return ApplyResult(action_id=action.id, changed=False, message="topic exists")
        created = self._create_topic(desired)
        if not created:
            return ApplyResult(action_id=action.id, changed=False, message="topic exists")
        self._await(desired.name, lambda live: live is not None and live.partitions == desired.partitions)
        return ApplyResult(
            action_id=action.id, changed=True, message=f"created with {desired.partitions} partitions"
        )

    def _update(self, action: Action) -> ApplyResult:
        desired = _desired_topic(action)
        live = self._observe([desired.name]).get(desired.name)
        if live is None:
            raise PermanentBackendError(BACKEND, f"{action.id}: topic does not exist any more; plan again")
        # The rule refuses these; finding them here means live changed since the plan was made.
        if desired.partitions < live.partitions:
            raise PermanentBackendError(
                BACKEND, f"{action.id}: live has {live.partitions} partitions, more than {desired.partitions}"
            )
        if desired.replication_factor != live.replication_factor:
            raise PermanentBackendError(
                BACKEND,
                f"{action.id}: live replication factor {live.replication_factor} "
                f"≠ {desired.replication_factor}; plan again",
            )
        drift = config_drift(desired.config, live.config)
        grow = desired.partitions > live.partitions
        if not drift and not grow:
            return ApplyResult(action_id=action.id, changed=False, message="already converged")
        done: list[str] = []
        if drift:
            keys = [c.field.removeprefix("config.") for c in drift]
            self._alter_configs(desired.name, {k: wire_config_value(k, desired.config[k]) for k in keys})
            done += [str(c) for c in drift]
        if grow:
            self._create_partitions(desired.name, desired.partitions)
            done.append(f"partitions: {live.partitions} → {desired.partitions}")

        def converged(now: TopicResource | None) -> bool:
            return (
                now is not None
                and now.partitions == desired.partitions
                and not config_drift(desired.config, now.config)
            )

        self._await(desired.name, converged, with_config=bool(drift))
        return ApplyResult(action_id=action.id, changed=True, message="; ".join(done))

    def _delete(self, action: Action) -> ApplyResult:
        name = action.name
        if not self._describe_topics([name]):
            return ApplyResult(action_id=action.id, changed=False, message="topic absent")
        self._delete_topic(name)
        self._await(name, lambda live: live is None)
        return ApplyResult(action_id=action.id, changed=True, message="deleted")

    def _recreate(self, action: Action) -> ApplyResult:
        """Delete the topic and create it with the desired spec (an approved partition decrease).
        Idempotent: a topic that already has the desired partitions and factor is left alone."""
        desired = _desired_topic(action)
        live = self._observe([desired.name]).get(desired.name)
        if live is not None and (live.partitions, live.replication_factor) == (
            desired.partitions,
            desired.replication_factor,
        ):
            return ApplyResult(action_id=action.id, changed=False, message="already recreated")
        if live is not None:
            self._delete_topic(desired.name)
            self._await(desired.name, lambda now: now is None)
        deadline = time.monotonic() + self._timeout
        # A deleted topic may still be "marked for deletion" on a broker: creating it is refused
        # (TOPIC_ALREADY_EXISTS) for a moment, while no read shows it.
        while not self._create_topic(desired):
            if self._describe_topics([desired.name]) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        self._await(desired.name, lambda now: now is not None and now.partitions == desired.partitions)
        return ApplyResult(
            action_id=action.id,
            changed=True,
            message=f"recreated with {desired.partitions} partitions (approved by {action.approved_by})",
        )

    def _await(
        self, name: str, done: Callable[[TopicResource | None], bool], *, with_config: bool = False
    ) -> None:
        """Poll until a read shows the effect of a change (metadata reaches brokers asynchronously)."""
        deadline = time.monotonic() + self._timeout
        pause = 0.05
        while True:
            if with_config:
                live = self._observe([name]).get(name)
            else:
                meta = self._describe_topics([name]).get(name)
                live = meta.resource(name) if meta else None
            if done(live):
                return
            if time.monotonic() >= deadline:
                raise TransientBackendError(BACKEND, f"{name}: change not visible after {self._timeout}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    # --- round trips (each counted, errors wrapped, transient ones retried) ----------------------

    def _observe(self, names: Sequence[str]) -> dict[str, TopicResource]:
        wanted = sorted(set(names))
        if not wanted:
            return {}
        meta = self._describe_topics(wanted)
        configs = self._describe_configs(sorted(meta)) if meta else {}
        return {
            n: m.resource(n, configs[n])
            for n, m in meta.items()
            if n in configs  # deleted between the two reads: absent
        }

    @retrying()
    def _describe_topics(self, names: Sequence[str]) -> dict[str, _TopicMeta]:
        self.stats.count("describe_topics")
        out: dict[str, _TopicMeta] = {}
        with self._sdk_errors("describe_topics"):
            futures = self._admin.describe_topics(TopicCollection(list(names)), request_timeout=self._timeout)
            for name, fut in futures.items():
                try:
                    desc = fut.result(timeout=self._timeout)
                except KafkaException as e:
                    if _code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        continue
                    raise
                parts = sorted(desc.partitions, key=lambda p: p.id)
                # During a reassignment replica lists differ; the largest is the factor being kept.
                rf = max((len(p.replicas) for p in parts), default=0)
                out[name] = _TopicMeta(partitions=tuple(p.id for p in parts), replication_factor=rf)
        return out

    @retrying()
    def _describe_configs(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Every config of ``names`` (topics gone meanwhile left out), in one request.

        Topics with equal configs share one map: most topics differ from the broker's defaults in
        a few values that whole families of topics share (3 distinct maps among 300 bench topics),
        and a map of 36 entries is ~1.2 KB, 6 MiB held for 5,000 topics between passes. The SDK
        holds the whole answer in C while it converts it (~86 MiB more at 5,000 topics); freed,
        that memory stays in the C heap until ``memory.trim`` gives it back."""
        self.stats.count("describe_configs")
        out: dict[str, dict[str, str]] = {}
        maps: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        try:
            with self._sdk_errors("describe_configs"), _lean_entries():
                resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
                futures = self._admin.describe_configs(resources, request_timeout=self._timeout)
                for res, fut in futures.items():
                    try:
                        entries: dict[str, LiveEntry] = fut.result(timeout=self._timeout)
                    except KafkaException as e:
                        if _code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            continue
                        raise
                    # Sensitive values come back as None; they cannot be compared and are left out.
                    # Interned: one str per distinct name and value across the topics (most are
                    # broker defaults), where the SDK builds new ones for every entry.
                    config = {
                        sys.intern(k): sys.intern(e.value) for k, e in entries.items() if e.value is not None
                    }
                    out[res.name] = maps.setdefault(frozenset(config.items()), config)
                del futures
        finally:
            memory.trim()
        return out

    @retrying()
    def _describe_all(self) -> dict[str, _TopicMeta]:
        """Partitions and replication factor of every non-internal topic, from one metadata read."""
        self.stats.count("describe_topics")
        with self._sdk_errors("describe_topics"):
            topics = self._admin.list_topics(timeout=self._timeout).topics
        out: dict[str, _TopicMeta] = {}
        for name, t in topics.items():
            if name.startswith("__") or t.error is not None:
                continue
            parts = sorted(t.partitions.values(), key=lambda p: p.id)
            rf = max((len(p.replicas) for p in parts), default=0)
            out[name] = _TopicMeta(partitions=tuple(p.id for p in parts), replication_factor=rf)
        return out

    @retrying()
    def _list_topics(self) -> list[str]:
        self.stats.count("list_topics")
        with self._sdk_errors("list_topics"):
            return list(self._admin.list_topics(timeout=self._timeout).topics)

    @retrying()
    def _create_topic(self, desired: TopicResource) -> bool:
        """Create the topic; False when it exists already (e.g. a retried request that did land)."""
        self.stats.count("create_topics")
        config = {k: wire_config_value(k, v) for k, v in desired.config.items()}
        new = NewTopic(
            desired.name,
            num_partitions=desired.partitions,
            replication_factor=desired.replication_factor,
            config=config,
        )
        with self._sdk_errors("create_topics"):
            fut = self._admin.create_topics(
                [new], operation_timeout=self._timeout, request_timeout=self._timeout
            )[desired.name]
            try:
                fut.result(timeout=self._timeout)
            except KafkaException as e:
                if _code(e) == KafkaError.TOPIC_ALREADY_EXISTS:
                    return False
                raise
        return True

    @retrying()
    def _alter_configs(self, name: str, values: dict[str, str]) -> None:
        # SET of absolute values: repeating it (a retry) gives the same state.
        self.stats.count("incremental_alter_configs")
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(values.items())
        ]
        res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        with self._sdk_errors("incremental_alter_configs"), _ENTRY_CLASS:  # never with LiveEntry swapped in
            for fut in self._admin.incremental_alter_configs([res], request_timeout=self._timeout).values():
                fut.result(timeout=self._timeout)

    @retrying()
    def _create_partitions(self, name: str, total: int) -> None:
        self.stats.count("create_partitions")
        with self._sdk_errors("create_partitions"):
            fut = self._admin.create_partitions(
                [NewPartitions(name, total)], operation_timeout=self._timeout, request_timeout=self._timeout
            )[name]
            try:
                fut.result(timeout=self._timeout)
            except KafkaException as e:
                # A retry after a request that did land: the topic has `total` partitions already.
                if _code(e) == KafkaError.INVALID_PARTITIONS:
                    meta = self._describe_topics([name]).get(name)
                    if meta is not None and len(meta.partitions) == total:
                        return
                raise

    @retrying()
    def _delete_topic(self, name: str) -> None:
        self.stats.count("delete_topics")
        with self._sdk_errors("delete_topics"):
            fut = self._admin.delete_topics(
                [name], operation_timeout=self._timeout, request_timeout=self._timeout
            )[name]
            try:
                fut.result(timeout=self._timeout)
            except KafkaException as e:
                if _code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return
                raise

    @retrying()
    def _list_offsets(self, topic: str, partitions: Sequence[int], spec: OffsetSpec) -> dict[int, int]:
        self.stats.count("list_offsets")
        request = {TopicPartition(topic, p): spec for p in partitions}
        out: dict[int, int] = {}
        with self._sdk_errors("list_offsets"):
            for tp, fut in self._admin.list_offsets(request, request_timeout=self._timeout).items():
                out[tp.partition] = int(fut.result(timeout=self._timeout).offset)
        return out

    def _meta_of(self, topic: str) -> _TopicMeta:
        meta = self._describe_topics([topic]).get(topic)
        if meta is None:
            raise PermanentBackendError(BACKEND, f"topic {topic} does not exist")
        return meta

    @contextmanager
    def _sdk_errors(self, op: str) -> Iterator[None]:
        if self._closed:
            raise PermanentBackendError(BACKEND, f"{op}: adapter is closed")
        try:
            yield
        except BackendError:
            raise
        except KafkaException as e:
            raise _classify(op, e) from e
        except FutureTimeout as e:
            raise TransientBackendError(BACKEND, f"{op}: no answer within {self._timeout}s") from e

    @staticmethod
    def _check_kind(kind: ResourceKind) -> None:
        if kind is not ResourceKind.TOPIC:
            raise PermanentBackendError(BACKEND, f"the Kafka adapter handles topics, not {kind}")


def _desired_topic(action: Action) -> TopicResource:
    if not isinstance(action.desired, TopicResource):
        raise PermanentBackendError(BACKEND, f"{action.id}: the action carries no desired topic")
    return action.desired



def event_producer(bootstrap_servers: str, topic: str, *, partitions: int = 1) -> Producer:
    """A producer for pipectl's operational event stream (``obs.events.KafkaEventSink``).

    The topic is created when missing (one partition keeps the stream in commit order; events are
    keyed by release anyway). Returns a ``confluent_kafka.Producer``; callers see it only through
    the ``EventProducer`` Protocol, so no other module imports the SDK.
    """
    admin = KafkaAdapter(bootstrap_servers)
    try:
        if topic not in admin.list_topic_names(topic):
            admin._create_topic(TopicResource(name=topic, partitions=partitions, replication_factor=1))
    finally:
        admin.close()
    return Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 50, "enable.idempotence": True})
