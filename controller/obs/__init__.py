"""Observability: what the controller tells operators about itself.

* :mod:`controller.obs.metrics` — Prometheus metrics in one registry (``REGISTRY``), the names the
  alert rules in ``manifests/platform/monitoring/`` are written against;
* :mod:`controller.obs.logging` — structlog JSON logs with run_id/release/stage bound and secrets
  redacted;
* :mod:`controller.obs.events` — the operational event stream (JSON lines, Kafka), queryable as a
  Hive table.

Layering: obs sits just above ``controller.model`` and imports nothing else from ``controller``,
so every other package can report through it.
"""
