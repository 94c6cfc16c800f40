"""Manual rollback, a verb people use on a running pipeline (audited); approvals are
``controller.audit.approvals`` (``pipectl approve``)."""

from __future__ import annotations

from controller.source.validate import load_repo
from controller.wiring import Runtime


def manual_rollback(rt: Runtime, release: str, stage: str, to_version: str | None, actor: str) -> str:
    """Converge ``stage`` to an earlier promoted version (the controller's own code path)."""
    from controller.engine.manual import rollback_stage

    commit = rt.source.resolve()
    snap = load_repo(rt.source.checkout(commit).root)
    snap.commit = commit
    return rollback_stage(rt.reconciler, snap, release, stage, to_version, actor)
