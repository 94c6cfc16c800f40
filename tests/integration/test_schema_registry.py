"""A real ``confluent_kafka.schema_registry.SchemaRegistryClient`` against a running controller's
``/schema-registry`` on the real stack: subjects and versions from git, schemas by id, compatibility
checked, registration refused; the Confluent AvroSerializer/AvroDeserializer round trip through
real Kafka with ``auto.register.schemas`` off (lookup, and ``use.latest.version``); and the ids
the same after the state store is lost (rebuilt from git history)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from ctlkit import (
    Ctl,
    cleanup,
    commit_files,
    free_port,
    init_repo,
    stage_env_yaml,
    status,
    token_for,
    wait_for,
)

SUBJECT = "rc.events-value"
V1 = {
    "type": "record",
    "name": "Event",
    "namespace": "rc",
    "fields": [{"name": "host", "type": "string"}, {"name": "value", "type": "double"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "dc", "type": "string", "default": "unknown"}]}


def release(name: str, version: str) -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
  schemas:
    - name: event
      path: schemas/event.avsc
      compatibility: BACKWARD
  topics:
    - name: rc.events
      partitions: 1
      replicationFactor: 1
      valueSchema: event
  rollout:
    stages: [dev]
    gates:
      - name: schema-compatible
        type: schemaCompatibility
"""


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[dict[str, Any]]:
    name = f"rc-{unique_name}"
    env = stage_env_yaml("dev", f"it{unique_name}.", f"it{unique_name}_", stack["airflow_dags_folder"])
    files = {
        "environments/dev.yaml": env,
        "releases/rc.yaml": release(name, "1.0.0"),
        "schemas/event.avsc": json.dumps(V1, indent=2),
    }
    repo = init_repo(tmp_path, files, "1.0.0")
    ctls: list[Ctl] = []

    def controller(state_name: str) -> tuple[Ctl, str]:
        ctl = Ctl(repo, tmp_path / state_name / "state.db", free_port(), tmp_path / f"{state_name}.log")
        ctls.append(ctl)
        ctl.start()
        return ctl, token_for(ctl.state, "alice")

    yield {"name": name, "repo": repo, "controller": controller, "topic": f"it{unique_name}.rc.events"}
    for c in ctls:
        c.stop()
    cleanup(stack, unique_name, name)


def sr_get(ctl: Ctl, token: str, path: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{ctl.port}/schema-registry{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except OSError:
        return None


def client(ctl: Ctl, token: str) -> SchemaRegistryClient:
    return SchemaRegistryClient(
        {
            "url": f"http://127.0.0.1:{ctl.port}/schema-registry",
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": token,
            "bearer.auth.logical.cluster": "pipectl",  # required by the client, ignored by pipectl
        }
    )


def by_logical_topic(_ctx: SerializationContext, _record_name: str | None) -> str:
    return SUBJECT  # the stage's topic prefix is not part of the subject (docs/schema-registry.md)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


def consume(bootstrap: str, topic: str, n: int, group: str) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[bytes] = []
    try:
        for _ in range(120):
            m = c.poll(1.0)
            if m is not None and m.error() is None and m.value() is not None:
                out.append(m.value())
            if len(out) >= n:
                break
    finally:
        c.close()
    return out


def test_standard_client_and_avro_round_trip(world: dict[str, Any], kafka_bootstrap: str) -> None:
    controller = world["controller"]
    ctl, token = controller("state")
    wait_for(lambda: sr_get(ctl, token, "/subjects") == [SUBJECT], 60, "the subject served", ctl.log)
    commit_files(world["repo"], {"schemas/event.avsc": json.dumps(V2, indent=2),
                                 "releases/rc.yaml": release(world["name"], "1.1.0")}, "1.1.0: dc")
    ctl.webhook()
    wait_for(lambda: sr_get(ctl, token, f"/subjects/{SUBJECT}/versions") == [1, 2], 60, "version 2", ctl.log)

    sr = client(ctl, token)
    assert sr.get_subjects() == [SUBJECT]
    assert sr.get_versions(SUBJECT) == [1, 2]
    latest = sr.get_latest_version(SUBJECT)
    assert (latest.version, latest.schema_id) == (2, 2)
    assert json.loads(sr.get_schema(1).schema_str) == V1
    assert json.loads(sr.get_version(SUBJECT, 1).schema.schema_str) == V1
    assert [(v.subject, v.version) for v in sr.get_schema_versions(2)] == [(SUBJECT, 2)]
    assert sr.get_compatibility(SUBJECT) == "BACKWARD"
    v3_ok = {**V2, "fields": [*V2["fields"], {"name": "rack", "type": ["null", "string"], "default": None}]}
    assert sr.test_compatibility(SUBJECT, Schema(json.dumps(v3_ok), "AVRO")) is True
    no_default = {**V2, "fields": [*V2["fields"], {"name": "rack", "type": "string"}]}
    assert sr.test_compatibility(SUBJECT, Schema(json.dumps(no_default), "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as refused:
        sr.register_schema(SUBJECT, Schema(json.dumps(v3_ok), "AVRO"))
    assert refused.value.http_status_code == 405 and "git is the writer" in refused.value.error_message
    assert sr.lookup_schema(SUBJECT, Schema(json.dumps(V1), "AVRO")).version == 1

    # the Confluent serializers: writer v1 by lookup, writer v2 as the latest version; no registration
    topic = world["topic"]
    wait_for(lambda: (status(ctl.state, world["name"]).get("stages", {}).get("dev") or {}).get("phase")
             == "Succeeded", 120, "the topic created at dev", ctl.log)
    conf = {"auto.register.schemas": False, "subject.name.strategy": by_logical_topic}
    ctx = SerializationContext(topic, MessageField.VALUE)
    old = AvroSerializer(sr, json.dumps(V1), conf=conf)({"host": "a", "value": 1.5}, ctx)
    new = AvroSerializer(sr, json.dumps(V2), conf={**conf, "use.latest.version": True})(
        {"host": "b", "value": 2.5, "dc": "eu"}, ctx
    )
    assert old is not None and new is not None
    assert old[:5] == b"\x00" + (1).to_bytes(4, "big") and new[:5] == b"\x00" + (2).to_bytes(4, "big")
    produce(kafka_bootstrap, topic, [old, new])
    # a v2 reader decodes each record with its writer schema (resolved by the id in the record)
    read = AvroDeserializer(sr, json.dumps(V2), conf={"subject.name.strategy": by_logical_topic})
    got = [read(v, ctx) for v in consume(kafka_bootstrap, topic, 2, f"{topic}-1")]
    assert got == [{"host": "a", "value": 1.5, "dc": "unknown"}, {"host": "b", "value": 2.5, "dc": "eu"}]

    # the state store is lost: a controller on a fresh one rebuilds the same ids from git history
    ctl.stop()
    ctl2, token2 = controller("fresh-state")
    wait_for(lambda: sr_get(ctl2, token2, f"/subjects/{SUBJECT}/versions") == [1, 2], 60, "rebuilt", ctl2.log)
    sr2 = client(ctl2, token2)
    assert json.loads(sr2.get_schema(1).schema_str) == V1 and json.loads(sr2.get_schema(2).schema_str) == V2
    again = AvroDeserializer(sr2, conf={"subject.name.strategy": by_logical_topic})  # no reader schema
    assert [again(v, ctx) for v in consume(kafka_bootstrap, topic, 2, f"{topic}-2")] == [
        {"host": "a", "value": 1.5},
        {"host": "b", "value": 2.5, "dc": "eu"},
    ]
