"""The verbs people use on a running pipeline: approve and manual rollback, each audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from controller.audit.ledger import AuditRecord, Ledger
from controller.source.validate import load_repo
from controller.store.db import Store
from controller.wiring import Runtime


def record_approval(store: Store, release: str, stage: str, version: str, approver: str) -> bool:
    """Store the approval and write an audit record; False when it was approved already."""
    now = datetime.now(UTC)
    new = store.approve(release, stage, version, approver)
    if new:
        Ledger(store).append(
            AuditRecord(
                run_id=uuid.uuid4().hex,
                kind="approval",
                release=release,
                version=version,
                stage=stage,
                outcome="approved",
                actor=approver,
                message=f"{approver} approved {version} for {stage}",
                started_at=now,
                finished_at=now,
            )
        )
        store.add_event(release, stage, "Normal", "Approved", f"{approver} approved {version}")
    return new


def manual_rollback(rt: Runtime, release: str, stage: str, to_version: str | None, actor: str) -> str:
    """Converge ``stage`` to an earlier promoted version (the controller's own code path)."""
    from controller.engine.manual import rollback_stage

    commit = rt.source.resolve()
    snap = load_repo(rt.source.checkout(commit).root)
    snap.commit = commit
    return rollback_stage(rt.reconciler, snap, release, stage, to_version, actor)
