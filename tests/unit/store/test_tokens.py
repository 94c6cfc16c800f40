"""API tokens are stored hashed and never shown again; approvals are bound to a revision digest;
a store from before that binding keeps its old approvals aside, counting none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.store.db import Store
from controller.store.tokens import TokenStore, token_digest


def test_a_token_is_stored_only_as_its_sha256(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    tokens = TokenStore(Store(f"sqlite:///{db}"))
    tid, token = tokens.create("alice", ["sre", "ops", "sre"], created_by="root")
    assert token.startswith("pct_") and len(token) > 40
    assert token.encode() not in db.read_bytes()
    for wal in tmp_path.glob("s.db-wal"):
        assert token.encode() not in wal.read_bytes()
    p = tokens.principal(token)
    assert p is not None and p.user == "alice" and p.groups == ("ops", "sre") and p.via == f"token:{tid}"
    [row] = tokens.list()
    assert row["id"] == tid and row["user"] == "alice" and "token_sha256" not in row
    assert token_digest(token) not in str(row)
    assert tokens.active_count() == 1


def test_revoke_and_unknown_tokens(tmp_path: Path) -> None:
    tokens = TokenStore(Store(f"sqlite:///{tmp_path / 's.db'}"))
    tid, token = tokens.create("bob")
    assert tokens.principal(token + "x") is None
    assert tokens.principal("not-a-token") is None
    assert tokens.principal("pct_\udcff\u00e9") is None  # any text, never an error
    assert tokens.revoke(tid) and not tokens.revoke(tid) and not tokens.revoke("tok_nope")
    assert tokens.principal(token) is None
    assert tokens.active_count() == 0 and tokens.list()[0]["revoked_at"] is not None


@pytest.mark.parametrize("user", ["", "a b", "x" * 200, "-lead", "al:ice"])
def test_bad_user_names_are_refused(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValueError):
        TokenStore(Store(f"sqlite:///{tmp_path / 's.db'}")).create(user)


def test_an_approval_counts_for_its_revision_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert store.approve("r", "prod", "1.0.0", "alice", a)
    assert not store.approve("r", "prod", "1.0.0", "carol", a)
    assert store.approval("r", "prod", "1.0.0", a)["approver"] == "alice"  # type: ignore[index]
    assert store.approval("r", "prod", "1.0.0", b) is None
    assert store.approval("r", "prod", "1.0.0", None) is None
    assert store.approval("r", "prod", "1.1.0", a) is None


def test_approvals_from_before_revisions_are_kept_aside(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE approvals (id INTEGER PRIMARY KEY, release TEXT, stage TEXT, version TEXT, "
                "approver TEXT, ts TIMESTAMP)")
    con.execute("INSERT INTO approvals VALUES (1, 'r', 'prod', '1.0.0', 'mallory', '2026-01-01')")
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    assert store.approval("r", "prod", "1.0.0", "sha256:" + "a" * 64) is None
    assert store.approve("r", "prod", "1.0.0", "alice", "sha256:" + "a" * 64)
    con = sqlite3.connect(db)
    assert con.execute("SELECT approver FROM approvals_unbound").fetchall() == [("mallory",)]
    con.close()
    Store(f"sqlite:///{db}")  # opening it again changes nothing
