"""Helpers shared by the Confluent wire-format tests (``test_schema_wire``, ``test_schema_wire_controller``):
the example producer as a module, the example schema v1 and a compatible v2, and producing events
framed with the ids a running controller's registry serves."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCHEMA_V1 = REPO / "manifests" / "schemas" / "host_metric_event.avsc"
SUBJECT = "telemetry.host_metrics-value"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
STEP_MS = 50


def _load_producer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_events", REPO / "manifests" / "tools" / "produce_events.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("produce_events", mod)
    spec.loader.exec_module(mod)
    return mod


pe = _load_producer()


def v2_schema() -> str:
    """v1 with a field added *first*, with a default: a v2 body read as v1 (or v1 as v2) does not parse."""
    v1 = json.loads(SCHEMA_V1.read_text())
    return json.dumps({**v1, "fields": [{"name": "region", "type": "string", "default": "eu"}, *v1["fields"]]})


def produce(url: str, topic: str, schema: Path, seed: int, count: int, start: dt.datetime) -> dict[str, Any]:
    """``count`` example events from ``start`` (one every ``STEP_MS``), written with ``schema`` and
    framed with the id the registry at ``url`` serves for it (token: ``$PIPECTL_SCHEMA_REGISTRY_TOKEN``)."""
    out = pe.produce(pe.parse_args([
        "--bootstrap-servers", "127.0.0.1:9092", "--topic", topic, "--count", str(count),
        "--seed", str(seed), "--event-time-start", start.isoformat(), "--event-time-step-ms", str(STEP_MS),
        "--schema", str(schema), "--schema-registry", url, "--subject", SUBJECT,
    ]))
    assert (out["sent"], out["delivered"], out["failed"]) == (count, count, 0), out
    return dict(out)


def events(seed: int, count: int, start: dt.datetime) -> list[Any]:
    """The events ``produce`` writes for ``seed``, ``count`` and ``start`` (20 hosts, 4 metrics)."""
    return list(pe.generate_events(seed, count, 20, 4, pe.parse_time_ms(start.isoformat()), float(STEP_MS)))
