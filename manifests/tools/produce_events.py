"""Produce HostMetricEvent records (Avro in the Confluent wire format) to a Kafka topic.

Each value is magic byte 0, the writer schema's id (4 bytes, big-endian) and the Avro body
(``controller.jobkit.wire.frame``). The id is the one pipectl's schema registry serves for the
schema (``--schema``, default the example's ``schemas/host_metric_event.avsc``):

- ``--schema-registry URL`` asks a running controller's registry (Confluent's
  ``SchemaRegistryClient``, lookup of the schema under ``--subject``; the API token in
  ``$PIPECTL_SCHEMA_REGISTRY_TOKEN``); registration is never attempted (git is the writer);
- otherwise the id is computed from the git repository the schema file is in (``--repo`` to
  name another), with pipectl's own fold of its history (``repo_schema_id``): the same id the
  controller serves at the branch's head;
- ``--schema-id N`` names it outright.

A record field the schema has and the event has not (a field a newer schema adds) is written with
its default.

Deterministic with ``--seed``: the same arguments produce the same hosts, metrics, values and,
with ``--event-time-start``, the same event times (``start + i * step``), so tests can compute the
expected aggregates (``--expected-out``). Without ``--event-time-start`` the event time is the
wall clock at send time, which is what latency measurements want.

    python manifests/tools/produce_events.py --bootstrap-servers 127.0.0.1:9092 \\
        --topic dev.telemetry.host_metrics --rate 2000 --duration 30 --seed 7

Prints one JSON line: what was sent, delivered, and the rate achieved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.io
import avro.schema

from controller.jobkit.wire import TOKEN_ENV, frame

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "host_metric_event.avsc"
METRICS = ("cpu.user", "cpu.system", "mem.used", "disk.io", "net.rx", "net.tx", "load.1m", "gc.pause")
UTC = dt.UTC


@dataclass(frozen=True)
class Event:
    host: str
    metric: str
    value: float
    event_time_ms: int


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (naive means UTC)."""
    if text.lstrip("-").isdigit():
        return int(text)
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def generate_events(
    seed: int,
    count: int | None,
    hosts: int = 20,
    metrics: int = 4,
    event_time_start_ms: int | None = None,
    step_ms: float = 10.0,
) -> Iterator[Event]:
    """Deterministic event stream; ``count=None`` is endless. Event time ``None`` start = now."""
    rng = random.Random(seed)
    names = METRICS[: max(1, min(metrics, len(METRICS)))]
    i = 0
    while count is None or i < count:
        host = f"host-{rng.randrange(hosts):04d}"
        metric = names[rng.randrange(len(names))]
        value = round(rng.uniform(0.0, 100.0), 3)
        if event_time_start_ms is None:
            event_time = int(time.time() * 1000)
        else:
            event_time = event_time_start_ms + int(i * step_ms)
        yield Event(host, metric, value, event_time)
        i += 1


def expected_aggregates(events: Iterable[Event]) -> list[dict[str, Any]]:
    """1-minute aggregates (UTC) the job must produce for ``events``, sorted by key."""
    acc: dict[tuple[str, str, int], list[float]] = {}
    for e in events:
        minute = e.event_time_ms - e.event_time_ms % 60_000
        a = acc.setdefault((e.host, e.metric, minute), [0, 0.0, float("-inf")])
        a[0] += 1
        a[1] += e.value
        a[2] = max(a[2], e.value)
    out = []
    for (host, metric, minute), (n, total, peak) in sorted(acc.items()):
        start = dt.datetime.fromtimestamp(minute / 1000, tz=UTC)
        out.append(
            {
                "host": host,
                "metric": metric,
                "window_start": start.strftime("%Y-%m-%d %H:%M:%S"),
                "samples": int(n),
                "avg_value": total / n,
                "max_value": peak,
                "dt": start.strftime("%Y-%m-%d"),
            }
        )
    return out


class _ReadLog:
    """A ``GitSource`` that records the paths read (``repo_schema_id``'s exactness check)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.paths: set[str] = set()

    def first_parent(self, head: str, since: str | None = None) -> list[str]:
        return list(self.source.first_parent(head, since))

    def files_at(self, commit: str, under: str) -> list[str]:
        return list(self.source.files_at(commit, under))

    def read_at(self, commit: str, path: str) -> bytes | None:
        self.paths.add(path)
        data: bytes | None = self.source.read_at(commit, path)
        return data


def repo_schema_id(schema_path: Path, repo: Path | None = None, branch: str = "main") -> int:
    """The id pipectl's registry gives the schema's content at the head of ``branch`` of the git
    repository holding ``schema_path`` (or ``repo``, a directory of manifests in a git work tree).

    The fold is ``controller.rollout.schema_registry.build`` over ``schema_history.at_commit``, as
    the controller's (``registry_sync``). Only the commits that change the manifest directory are
    read: the others declare the same schemas as the commit before them, and folding the same
    schemas again changes nothing. That holds while every file the releases read is inside the
    directory; when one is outside, every commit is read.
    """
    from controller.model.manifest import SchemaFormat
    from controller.rollout.schema_registry import build, identity
    from controller.source.git import GitSource
    from controller.source.schema_history import at_commit, history

    src = GitSource(str(repo or schema_path.resolve().parent.parent), branch=branch)
    if not src.is_git:
        where = repo or schema_path
        raise SystemExit(f"{where}: not in a git repository; give --schema-id or --schema-registry")
    head = src.resolve()
    assert head is not None
    log = _ReadLog(src)
    under = src.subdir or "."
    listed = subprocess.run(
        ["git", "rev-list", "--first-parent", "--reverse", head, "--", under],
        cwd=src.repo, capture_output=True, text=True, check=True,
    ).stdout.split()
    steps = [at_commit(log, c, src.subdir) for c in listed]
    if src.subdir and any(not p.startswith(src.subdir + "/") for p in log.paths):
        steps = history(src, head, None, src.subdir)
    ids = {identity(e.format, e.text): e.id for e in build(steps).schemas}
    key = identity(SchemaFormat.AVRO, schema_path.read_text(encoding="utf-8"))
    if key not in ids:
        raise SystemExit(
            f"{schema_path}: no release at {branch} ({head[:12]}) declares this schema for a topic, so "
            "pipectl's registry serves no id for it: commit it, or give --schema-id"
        )
    return ids[key]


def registry_schema_id(url: str, subject: str, schema_path: Path) -> int:
    """The id a Confluent-compatible registry (pipectl's ``/schema-registry``) has for the schema
    under ``subject`` (a lookup; nothing is registered)."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    conf: dict[str, Any] = {"url": url}
    token = os.environ.get(TOKEN_ENV)
    if token:
        conf.update({
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": token,
            "bearer.auth.logical.cluster": "pipectl",  # the client requires it; pipectl ignores it
        })
    text = schema_path.read_text(encoding="utf-8")
    found = SchemaRegistryClient(conf).lookup_schema(subject, Schema(text, "AVRO"))
    return int(found.schema_id)


class Encoder:
    """Avro binary in the Confluent wire format with ``schema_id`` (resolved from the schema's git
    repository when not given: ``repo_schema_id``)."""

    def __init__(self, schema_path: Path, schema_id: int | None = None) -> None:
        self.schema = avro.schema.parse(schema_path.read_text(encoding="utf-8"))
        self.schema_id = repo_schema_id(schema_path) if schema_id is None else schema_id
        self.writer = avro.io.DatumWriter(self.schema)
        self.defaults = {
            f.name: f.default for f in self.schema.fields if f.has_default  # type: ignore[attr-defined]
        }
        self._validated = False

    def encode(self, e: Event) -> bytes:
        datum = {
            **self.defaults,
            "host": e.host,
            "metric": e.metric,
            "value": e.value,
            "event_time": dt.datetime.fromtimestamp(e.event_time_ms / 1000, tz=UTC),
        }
        buf = io.BytesIO()
        if not self._validated:
            self.writer.write(datum, avro.io.BinaryEncoder(buf))  # validates against the schema once
            self._validated = True
        else:
            self.writer.write_data(self.schema, datum, avro.io.BinaryEncoder(buf))
        return frame(self.schema_id, buf.getvalue())


def resolve_schema_id(args: argparse.Namespace) -> int:
    """``--schema-id``, else the registry's (``--schema-registry``), else the repo's fold."""
    if args.schema_id is not None:
        return int(args.schema_id)
    if args.schema_registry:
        return registry_schema_id(args.schema_registry, args.subject, args.schema)
    return repo_schema_id(args.schema, args.repo, args.branch)


def step_ms(args: argparse.Namespace) -> float:
    """Event-time step between consecutive events."""
    if args.event_time_step_ms is not None:
        return float(args.event_time_step_ms)
    return 1000.0 / args.rate if args.rate else 10.0


def produce(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "client.id": "pipectl-produce-events",
        }
    )
    encoder = Encoder(args.schema, resolve_schema_id(args))
    stats = {"delivered": 0, "failed": 0}

    def on_delivery(err: Any, msg: Any) -> None:
        stats["failed" if err else "delivered"] += 1

    count = args.count
    if count is None and args.duration is None:
        raise SystemExit("give --count or --duration")
    events = generate_events(args.seed, count, args.hosts, args.metrics, args.event_time_start, step_ms(args))
    sent = 0
    first = last = None
    started = time.monotonic()
    deadline = started + args.duration if args.duration is not None else None
    for e in events:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if args.rate:
            ahead = started + sent / args.rate - now
            if ahead > 0:
                time.sleep(ahead)
        value = encoder.encode(e)
        while True:
            try:
                producer.produce(args.topic, value=value, key=e.host.encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent += 1
        first = e.event_time_ms if first is None else first
        last = e.event_time_ms
    remaining = producer.flush(args.flush_timeout)
    elapsed = time.monotonic() - started
    if remaining:
        raise KafkaException(f"{remaining} messages not delivered after {args.flush_timeout}s")
    return {
        "topic": args.topic,
        "sent": sent,
        "delivered": stats["delivered"],
        "failed": stats["failed"],
        "seconds": round(elapsed, 3),
        "rate": round(sent / elapsed, 1) if elapsed > 0 else None,
        "target_rate": args.rate or None,
        "seed": args.seed,
        "schema_id": encoder.schema_id,
        "first_event_time_ms": first,
        "last_event_time_ms": last,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="produce_events", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0 = as fast as possible)")
    p.add_argument("--count", type=int, help="number of events to send")
    p.add_argument("--duration", type=float, help="seconds to send for")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--metrics", type=int, default=4, help=f"how many of {len(METRICS)} metric names")
    p.add_argument("--event-time-start", type=parse_time_ms, help="epoch ms or ISO time of the first event")
    p.add_argument("--event-time-step-ms", type=float, help="event-time step (default 1000/rate, or 10)")
    p.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA, help="the writer schema (Avro)")
    p.add_argument("--schema-id", type=int, help="the schema's registry id (default: looked up)")
    p.add_argument("--schema-registry", metavar="URL", help=f"registry holding the id (token: ${TOKEN_ENV})")
    p.add_argument("--subject", default="telemetry.host_metrics-value", help="with --schema-registry")
    p.add_argument("--repo", type=Path, help="manifests (in git) the id is computed from")
    p.add_argument("--branch", default="main", help="with the repo: the branch the controller reads")
    p.add_argument("--expected-out", type=Path, help="write the expected 1-minute aggregates (JSON)")
    p.add_argument("--flush-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.expected_out and (args.event_time_start is None or args.count is None):
        p.error("--expected-out needs --count and --event-time-start (deterministic events)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = produce(args)
    if args.expected_out:
        events = generate_events(
            args.seed, summary["sent"], args.hosts, args.metrics, args.event_time_start, step_ms(args)
        )
        args.expected_out.write_text(json.dumps(expected_aggregates(events), indent=1), encoding="utf-8")
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
