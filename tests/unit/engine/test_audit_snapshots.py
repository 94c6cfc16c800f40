"""Deploy and promotion records carry the current snapshot of each of the release's Iceberg tables
at the stage (real ``Reconciler`` over the fakes of ``world.py``; the read itself:
``tests/unit/audit/test_snapshots.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.engine.world import World, release_yaml, repo_files, table

pytestmark = pytest.mark.usefixtures("quiet_logs")

PARQUET = "      partitionedBy:\n        - {name: dt, type: string}\n"


def test_apply_and_promotion_records_name_the_table_snapshot(tmp_path: Path) -> None:
    w = World(tmp_path)
    files = repo_files()
    files["releases/metrics.yaml"] = release_yaml().replace(PARQUET, "      format: iceberg\n")
    w.commit(files)
    dev = table("dev", "1.0.0")
    w.at("dev").presto.rows = [(dev, "2227857924248221524", "2026-12-05 10:00:00.123 UTC")]
    w.run_until(lambda: w.known_good("dev") == "1.0.0")
    recs = [r for r in w.audit() if r["stage"] == "dev"]
    kinds = {r["kind"] for r in recs}
    assert {"apply", "promotion"} <= kinds, kinds
    for r in recs:
        if r["kind"] in ("apply", "promotion"):
            assert r["snapshots"] == [
                {"table": dev, "snapshot_id": "2227857924248221524",
                 "committed_at": "2026-12-05T10:00:00.123Z", "error": None}
            ], r["kind"]


def test_a_release_without_iceberg_tables_records_no_snapshot(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    w.run_until(lambda: w.known_good("dev") == "1.0.0")
    recs = [r for r in w.audit() if r["stage"] == "dev"]
    assert recs and all(r["snapshots"] == [] for r in recs)
    assert "iceberg_snapshots" not in w.at("dev").presto.stats.calls
