"""An in-memory ``GateData`` for the gates' unit tests, and builders for their contexts.

Queries really run: the Presto SQL a gate produces is transpiled with sqlglot to SQLite and
executed against in-memory tables (one attached SQLite database per Hive database), so tests
check the SQL's results, not its text. Timestamps are stored as ``YYYY-MM-DD HH:MM:SS`` text,
which SQLite compares in time order.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlglot
import yaml

from controller.model.errors import PermanentBackendError
from controller.model.manifest import Environment, PipelineRelease
from controller.plan.desired import stage_context
from controller.rollout.gates import GateContext, JobNotFound, ProgressView

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

METRIC_COLUMNS = ("host", "metric", "window_start", "samples", "avg_value", "max_value")
METRIC_TYPES = ("varchar", "varchar", "timestamp", "bigint", "double", "double")
_COLUMNS_QUERY = re.compile(
    r"(?:\"(\w+)\"\.)?information_schema\.columns WHERE table_schema = '(\w+)' AND table_name = '(\w+)'"
)


def load_release(**spec_updates: Any) -> PipelineRelease:
    """The example host-metrics release, with top-level spec fields replaced."""
    doc = yaml.safe_load((MANIFESTS / "releases" / "host-metrics.yaml").read_text())
    doc["spec"].update(spec_updates)
    return PipelineRelease.model_validate(doc)


def environments() -> dict[str, Environment]:
    out = {}
    for p in sorted((MANIFESTS / "environments").glob("*.yaml")):
        env = Environment.model_validate(yaml.safe_load(p.read_text()))
        out[env.name] = env
    return out


def make_ctx(stage: str = "staging", release: PipelineRelease | None = None, **kw: Any) -> GateContext:
    rel = release or load_release()
    return GateContext(
        release=rel, stage=stage, stage_ctx=stage_context(stage, environments()), now=NOW, **kw
    )


def ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class FakeData:
    """GateData over SQLite tables and dictionaries; records every SQL statement it ran."""

    progress: dict[str, ProgressView | None] = field(default_factory=dict)
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    schemas: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    approvals: dict[tuple[str, str, str, str | None], str] = field(default_factory=dict)
    """(release, stage, version, revision digest) → principal."""
    raise_on_query: Exception | None = None
    queries: list[str] = field(default_factory=list)
    groups: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)
    """Consumer group → topic → partition → committed offset."""
    metrics: dict[str, list[float]] = field(default_factory=dict)
    """PromQL text → the values of its series (a query not listed: no series)."""
    raise_on_promql: Exception | None = None
    promql: list[tuple[str, datetime]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self._dbs: set[str] = set()
        self.column_types: dict[str, list[tuple[str, str, str | None]]] = {}
        """db.table → Presto's information_schema.columns rows (name, type, extra_info)."""
        self.catalogs: dict[str, str] = {}
        """db.table → the only catalog that reads it (an Iceberg table); others: the stage's."""

    # --- setup ----------------------------------------------------------------------------

    def table(
        self,
        name: str,
        rows: list[tuple[Any, ...]],
        columns: tuple[str, ...] = METRIC_COLUMNS,
        types: tuple[str, ...] = METRIC_TYPES,
        catalog: str | None = None,
    ) -> None:
        db, table = name.split(".")
        if catalog:
            self.catalogs[name] = catalog
        self.column_types[name] = [(c, t, None) for c, t in zip(columns, types, strict=True)]
        if db not in self._dbs:
            self.db.execute(f"ATTACH DATABASE ':memory:' AS \"{db}\"")
            self._dbs.add(db)
        self.db.execute(f'CREATE TABLE "{db}"."{table}" ({", ".join(columns)})')
        self.db.executemany(
            f'INSERT INTO "{db}"."{table}" VALUES ({", ".join("?" for _ in columns)})',
            [tuple(ts(v) if isinstance(v, datetime) else v for v in r) for r in rows],
        )

    # --- GateData ---------------------------------------------------------------------------

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.queries.append(sql)
        if self.raise_on_query is not None:
            raise self.raise_on_query
        m = _COLUMNS_QUERY.search(sql)
        if m:  # SQLite has no information_schema: the columns the test declared, as Presto types them
            name = f"{m.group(2)}.{m.group(3)}"
            return list(self.column_types.get(name, [])) if self.catalogs.get(name) == m.group(1) else []
        lite = self._in_catalogs(sql).sql(dialect="sqlite")
        return [tuple(r) for r in self.db.execute(lite).fetchall()]

    def _in_catalogs(self, sql: str) -> sqlglot.exp.Expression:
        """The query without catalogs, after checking each table is read in the one catalog that
        can (Presto's hive catalog fails on an Iceberg table, the iceberg catalog on a Hive one)."""
        tree = sqlglot.parse_one(sql, read="presto")
        for t in tree.find_all(sqlglot.exp.Table):
            if t.db:
                wanted = self.catalogs.get(f"{t.db}.{t.name}")
                if (t.catalog or None) != wanted:
                    raise PermanentBackendError("presto", f"{t.db}.{t.name} is not readable in catalog {t.catalog!r}")
            t.set("catalog", None)
        return tree

    def job_progress(self, job_name: str) -> ProgressView | None:
        if job_name not in self.progress:
            raise JobNotFound(job_name)
        return self.progress[job_name]

    def end_offsets(self, topic: str) -> dict[int, int]:
        return dict(self.offsets.get(topic, {}))

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]:
        return {t: dict(offsets) for t, offsets in self.groups.get(group, {}).items()}

    def prometheus_query(self, promql: str, at: datetime) -> list[float]:
        self.promql.append((promql, at))
        if self.raise_on_promql is not None:
            raise self.raise_on_promql
        return list(self.metrics.get(promql, []))

    def live_schema(self, release: str, schema: str) -> list[str]:
        return list(self.schemas.get((release, schema), []))

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> str | None:
        return self.approvals.get((release, stage, version, revision))


def metric_rows(
    start: datetime,
    minutes: int,
    hosts: int = 4,
    samples: int = 100,
    value: float = 50.0,
    drop: float = 0.0,
) -> list[tuple[Any, ...]]:
    """1-minute aggregates for ``hosts`` x 2 metrics; ``drop`` removes that share of samples."""
    out: list[tuple[Any, ...]] = []
    for m in range(minutes):
        ws = start + timedelta(minutes=m)
        for h in range(hosts):
            for i, metric in enumerate(("cpu", "mem")):
                v = value + h * 3.0 + i * 7.0 + (m % 5)
                n = round(samples * (1.0 - drop))
                out.append((f"host-{h}", metric, ws, n, v, v * 2))
    return out
