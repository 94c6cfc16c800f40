"""A World for the API tests: a store with tokens for alice (a prod approver), bob (not one) and
carol (in the approver group ``sre``), the real approval checks against a copy of the example repo,
and a FastAPI TestClient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from controller.api.server import ApiState, create_app
from controller.audit.approvals import ApprovalRequest, approve
from controller.source.validate import load_repo
from controller.store.db import Store
from controller.store.tokens import Principal, TokenStore

SECRET = "webhook-s3cret"
APPROVE = "/api/v1/releases/host-metrics/approve"


class World:
    def __init__(self, repo: Path, tmp: Path, with_tokens: bool = True):
        prod = repo / "environments" / "prod.yaml"
        if "approvers:" not in prod.read_text():
            prod.write_text(prod.read_text() + "  approvers: {users: [alice], groups: [sre]}\n")
        self.repo = repo
        self.store = Store(f"sqlite:///{tmp / 'state' / 's.db'}")
        self.store.put_status("host-metrics", {"version": "1.0.0", "phase": "Succeeded", "stages": {}})
        self.tokens = TokenStore(self.store)
        self.triggered: list[str | None] = []
        self.alice = self.bob = self.carol = ""
        if with_tokens:
            _, self.alice = self.tokens.create("alice")
            _, self.bob = self.tokens.create("bob", ["dev"])
            _, self.carol = self.tokens.create("carol", ["sre"])
        self.state = ApiState(
            store=self.store,
            tokens=self.tokens,
            webhook_secret=SECRET,
            trigger=self.triggered.append,
            health=lambda: {"ok": True, "leader": True, "commit": "abc", "error": "git: secret detail"},
            metrics=lambda: b"pipectl_up 1\n",
            approve=self.approve,
            max_body=4096,
            snapshot=lambda: load_repo(self.repo),
        )
        self.client = TestClient(create_app(self.state))

    def approve(self, req: ApprovalRequest, who: Principal) -> dict[str, Any]:
        snap = load_repo(self.repo)
        assert not snap.invalid_releases, snap.invalid_releases
        return approve(self.store, snap, req, who).as_dict()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
