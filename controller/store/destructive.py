"""Destructive changes in the state store: what a release owns at a stage (its inventory), and
people's approvals of destructive actions.

- ``Inventory`` (key ``inventory/<release>/<stage>``): physical ``Kind/name`` → logical key of
  every resource the release declared there (``controller.plan.inventory``), and the digests of
  the actions awaiting approval that an event has already announced.
- ``DestructiveApprovals`` (keys ``destructive/<release>/<stage>/<digest>``): one approval per
  action digest — the action id, the digest, the principal, the commit, the time — and, once the
  action was applied, the run that applied it (a used approval never counts again, even for an
  identical action later).

Only this module spells the keys. A release's inventory is written by the worker reconciling it
(or the CLI's apply, under the same leader lock); approvals by the API.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from controller.plan.actions import Grant
from controller.store.db import Store


class InventoryDoc(BaseModel):
    model_config = ConfigDict(extra="ignore")
    entries: dict[str, str] = Field(default_factory=dict)
    announced: list[str] = Field(default_factory=list)
    """Digests of actions awaiting approval already announced by an event."""


class DestructiveApproval(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str
    digest: str
    approver: str
    commit: str | None = None
    approved_at: datetime
    used_by: str | None = None
    """The run that applied the action."""


def _inventory_key(release: str, stage: str) -> str:
    return f"inventory/{release}/{stage}"


def _approval_prefix(release: str, stage: str) -> str:
    return f"destructive/{release}/{stage}/"


class Inventory:
    OWNED_PREFIXES = ("inventory/",)
    """Keys only the controller's passes write: ``Store.preload_kv`` may read them once per pass."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, release: str, stage: str) -> InventoryDoc:
        raw = self.store.kv_get(_inventory_key(release, stage))
        return InventoryDoc.model_validate_json(raw) if raw else InventoryDoc()

    def put(self, release: str, stage: str, doc: InventoryDoc) -> None:
        self.store.kv_put(_inventory_key(release, stage), doc.model_dump_json())

    def claimed_by_others(self, release: str, stage: str) -> set[str]:
        """Every entry of the other releases' inventories at ``stage`` (a resource that moved to
        another release is never pruned on behalf of the one it left)."""
        out: set[str] = set()
        for key, raw in self.store.kv_prefix("inventory/").items():
            _, other, other_stage = key.split("/", 2)
            if other != release and other_stage == stage:
                out |= set(InventoryDoc.model_validate_json(raw).entries)
        return out


class DestructiveApprovals:
    def __init__(self, store: Store):
        self.store = store

    def all(self, release: str, stage: str) -> list[DestructiveApproval]:
        rows = self.store.kv_prefix(_approval_prefix(release, stage))
        return [DestructiveApproval.model_validate_json(v) for _, v in sorted(rows.items())]

    def grants(self, release: str, stage: str) -> tuple[Grant, ...]:
        """The approvals not used yet, as the planner takes them."""
        return tuple(
            Grant(action_id=a.action_id, digest=a.digest, approver=a.approver)
            for a in self.all(release, stage)
            if a.used_by is None
        )

    def record(
        self, release: str, stage: str, action_id: str, digest: str, approver: str, commit: str | None
    ) -> tuple[DestructiveApproval, bool]:
        """Store an approval; (the approval, False) when this digest was approved already."""
        key = _approval_prefix(release, stage) + digest.removeprefix("sha256:")
        raw = self.store.kv_get(key)
        if raw:
            return DestructiveApproval.model_validate_json(raw), False
        a = DestructiveApproval(
            action_id=action_id,
            digest=digest,
            approver=approver,
            commit=commit,
            approved_at=datetime.now(UTC),
        )
        self.store.kv_put(key, a.model_dump_json())
        return a, True

    def use(self, release: str, stage: str, digest: str, run_id: str) -> None:
        key = _approval_prefix(release, stage) + digest.removeprefix("sha256:")
        raw = self.store.kv_get(key)
        if raw:
            a = DestructiveApproval.model_validate_json(raw)
            self.store.kv_put(key, a.model_copy(update={"used_by": run_id}).model_dump_json())
