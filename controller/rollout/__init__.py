"""Rollout: the pure decisions of progressive delivery.

- ``stages``: which stage a release works on next, and what a set of gate verdicts means;
- ``gates``: ``evaluate(gate, ctx, data) -> GateVerdict`` for every gate type, ``applicable``;
- ``context``: the ``GateData`` seam, ``GateContext``, ``ProgressView``, ``GateVerdict``;
- ``schema_compat``: Avro/JSON Schema compatibility modes and the rollout ``ordering`` they imply;
- ``sqlrewrite``: logical → stage table names in gate SQL (sqlglot), refusing anything unsafe;
- ``canary``: canary vs baseline over closed windows; ``canary_query``: its columns (declared or
  inferred) and SQL; ``statistics``: relativeTotal, Mann-Whitney U, Kolmogorov-Smirnov, quantile shift.

Nothing here talks to a backend: data arrives through ``GateData``, which the engine implements
with the adapters (``controller.engine.gating``). See ``.importlinter``.
"""
