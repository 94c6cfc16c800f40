"""Produce RequestLogEvent records (schemaless Avro binary) to a Kafka topic, for the
request-latency example: 3 services by 3 endpoints, mostly 2xx with some 5xx, latencies drawn
around a per-endpoint base (log-normal). Event time is the wall clock at send time.

    python manifests/tools/produce_requests.py --bootstrap-servers 127.0.0.1:9092 \\
        --topic dev.web.requests --rate 40 --duration 600 --seed 7

Prints one JSON line: what was sent and delivered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import avro.io
import avro.schema

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "request_log_event.avsc"
SERVICES = ("checkout", "search", "profile")
ENDPOINTS = ("/list", "/get", "/update")


def request(rng: random.Random, now_ms: int) -> dict[str, Any]:
    s, e = rng.randrange(len(SERVICES)), rng.randrange(len(ENDPOINTS))
    base = 40.0 + 25.0 * s + 10.0 * e
    return {
        "service": SERVICES[s],
        "endpoint": ENDPOINTS[e],
        "status": 503 if rng.random() < 0.1 else 200,
        "latency_ms": round(base * rng.lognormvariate(0.0, 0.25), 3),
        "event_time": dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC),
    }


def produce(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Producer

    schema = avro.schema.parse(args.schema.read_text(encoding="utf-8"))
    writer = avro.io.DatumWriter(schema)
    producer = Producer({"bootstrap.servers": args.bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 20, "client.id": "pipectl-produce-requests"})
    stats = {"sent": 0, "delivered": 0, "failed": 0}

    def on_delivery(err: Any, msg: Any) -> None:
        stats["failed" if err else "delivered"] += 1

    rng = random.Random(args.seed)
    started = time.monotonic()
    while time.monotonic() - started < args.duration:
        ahead = started + stats["sent"] / args.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        datum = request(rng, int(time.time() * 1000))
        buf = io.BytesIO()
        writer.write(datum, avro.io.BinaryEncoder(buf))
        key = datum["service"].encode()
        producer.produce(args.topic, value=buf.getvalue(), key=key, on_delivery=on_delivery)
        producer.poll(0)
        stats["sent"] += 1
    producer.flush(60)
    return {"topic": args.topic, **stats, "seconds": round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="produce_requests", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, default=40.0, help="requests per second")
    p.add_argument("--duration", type=float, required=True, help="seconds to send for")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    summary = produce(p.parse_args(argv))
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
