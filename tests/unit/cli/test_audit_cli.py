"""`pipectl audit verify`, `state backup` and `state restore` as an operator runs them: exit codes,
messages, and a restore that verifies only because it was recorded."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PIPECTL_CONFIG": os.environ["PIPECTL_CONFIG"]},
    )


def verify(cwd: Path) -> subprocess.CompletedProcess[str]:
    return run("audit", "verify", cwd=cwd)


def test_backup_restore_and_verify(tmp_path: Path) -> None:
    ok = verify(tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("0 record(s), chain intact"), ok.stderr
    assert run("state", "backup", "b1.db", cwd=tmp_path).returncode == 0
    assert run("state", "backup", "b2.db", cwd=tmp_path).returncode == 0
    ok = verify(tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("2 record(s), chain intact; head #2 "), ok.stderr
    assert (tmp_path / ".pipectl" / "audit-anchor.key").stat().st_mode & 0o077 == 0

    # an older backup copied into place (no `state restore`): refused, with the reason
    db = tmp_path / ".pipectl" / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "b1.db", db)
    bad = verify(tmp_path)
    assert bad.returncode == 1
    assert "the ledger has 1 record(s) (head #1) but the anchor signed" in bad.stderr
    assert "Traceback" not in bad.stderr

    # the same backup, restored and recorded: verifies
    restored = run("state", "restore", "b1.db", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "recorded and anchored (the ledger before it ended at #2)" in restored.stdout
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "restored from a backup at #2" in ok.stdout
    listing = json.loads(run("audit", "-o", "json", cwd=tmp_path).stdout)
    assert [r["kind"] for r in listing] == ["state-backup", "state-restore"]
    assert listing[1]["actor"].startswith("local:") and listing[1]["details"]["previous_anchor"]["seq"] == 2

    # a backup verifies on its own against the live store's anchors
    backup = run("audit", "verify", "--state", f"sqlite:///{tmp_path / 'b2.db'}",
                 "--backup-of", "sqlite:///.pipectl/state.db", cwd=tmp_path)
    assert backup.returncode == 0 and "signed by sqlite:state.db" in backup.stdout, backup.stderr


def test_a_bad_signature_and_an_edited_column_exit_1(tmp_path: Path) -> None:
    for name in ("b1.db", "b2.db", "b3.db"):
        assert run("state", "backup", name, cwd=tmp_path).returncode == 0
    con = sqlite3.connect(tmp_path / ".pipectl" / "state.db")
    con.execute("UPDATE audit SET release = 'host-metrics' WHERE seq = 2")
    con.commit()
    bad = verify(tmp_path)
    assert bad.returncode == 1 and "record #2 (" in bad.stderr
    con.execute("UPDATE audit SET release = '(state)' WHERE seq = 2")
    con.commit()
    con.close()
    assert verify(tmp_path).returncode == 0

    other = tmp_path / "other.key"
    bad = run("audit", "verify", "--anchor-key", str(other), cwd=tmp_path)
    assert bad.returncode == 1 and f"the anchor key {other} is missing" in bad.stderr
    run("state", "backup", "b4.db", "--anchor-key", str(other), "--anchors", str(tmp_path / "o.jsonl"),
        cwd=tmp_path)  # creates the other key
    bad = run("audit", "verify", "--anchor-key", str(other), cwd=tmp_path)
    assert bad.returncode == 1 and ":1: bad signature" in bad.stderr


def test_backup_of_a_postgres_store_points_at_pg_dump(tmp_path: Path) -> None:
    r = run("state", "backup", "x.db", "--state", "postgresql://u@127.0.0.1:1/db", cwd=tmp_path)
    assert r.returncode == 1 and "use pg_dump" in r.stderr


def test_a_restore_made_outside_pipectl_is_recorded_with_mark_restored(tmp_path: Path) -> None:
    for name in ("b1.db", "b2.db"):
        assert run("state", "backup", name, cwd=tmp_path).returncode == 0
    db = tmp_path / ".pipectl" / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "b1.db", db)  # as pg_restore would put an older state back
    assert verify(tmp_path).returncode == 1
    marked = run("state", "mark-restored", "b1.db", cwd=tmp_path)
    assert marked.returncode == 0 and "(the ledger before it ended at #2)" in marked.stdout, marked.stderr
    ok = verify(tmp_path)
    assert ok.returncode == 0 and "restored from a backup at #2" in ok.stdout, ok.stderr
