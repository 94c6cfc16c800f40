"""`pipectl audit show RUN`: one run's record (with its Iceberg snapshots), and the refusals of
``--query`` that need no server (the query itself as of a run: tests/integration/test_audit_snapshots.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from controller.audit.ledger import AuditRecord, Ledger, TableSnapshot
from controller.store.db import Store

ROOT = Path(__file__).resolve().parents[3]
T = datetime(2026, 12, 5, tzinfo=UTC)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PIPECTL_CONFIG": os.environ["PIPECTL_CONFIG"]},
    )


def test_show_prints_the_run_and_refuses_what_it_cannot_answer(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / '.pipectl' / 'state.db'}"
    snap = TableSnapshot(table="dev_t.ice", snapshot_id="2227857924248221524", committed_at="2026-12-05T10:00:00Z")
    Ledger(Store(state)).append(AuditRecord(
        run_id="run-1", kind="apply", release="r", stage="dev", outcome="succeeded",
        started_at=T, finished_at=T, snapshots=[snap],
    ))
    shown = run("audit", "show", "run-1", "-o", "json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["snapshots"] == [snap.model_dump()]

    missing = run("audit", "show", "run-2", cwd=tmp_path)
    assert missing.returncode == 1 and "no audit record of run run-2" in missing.stderr
    assert run("audit", "show", cwd=tmp_path).returncode == 1

    # the record's stage must be an environment of the repo (here: a repo without environments)
    (tmp_path / "repo" / "environments").mkdir(parents=True)
    res = run("audit", "show", "run-1", "--query", "SELECT 1", "--repo", str(tmp_path / "repo"), cwd=tmp_path)
    assert res.returncode == 1 and "stage 'dev' of the record is not an environment" in res.stderr, res.stderr
