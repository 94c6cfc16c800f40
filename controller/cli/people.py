"""The verbs people use on a running pipeline: approve and manual rollback, each audited."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from controller.audit.ledger import AuditRecord, Ledger
from controller.model.errors import NotFoundError, PipectlError
from controller.model.manifest import PipelineRelease
from controller.model.reasons import Phase
from controller.model.status import ReleaseStatus, StageStatus
from controller.plan.desired import RolloutInputs, stage_context
from controller.source.validate import load_repo
from controller.store.db import Store


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


def manual_rollback(rt: Any, release: str, stage: str, to_version: str | None, actor: str) -> str:
    """Converge ``stage`` to an earlier promoted version and hold the current one there."""
    store: Store = rt.store
    raw = store.get_status(release)
    if raw is None:
        raise NotFoundError(f'release "{release}" not found in the state store')
    status = ReleaseStatus.model_validate(raw)
    current = status.version
    if to_version is None:
        kg = store.known_good(release, stage)
        if kg is None or kg["version"] == current:
            prev = _previous_manifest(store, release, current)
            if prev is None:
                raise PipectlError(f"no earlier version of {release} was promoted; nothing to roll back to")
            to_version = prev[0].spec.version
        else:
            to_version = kg["version"]
    saved = store.kv_get(f"manifest/{release}/{to_version}")
    if saved is None:
        raise PipectlError(
            f"{release} {to_version} was never promoted; known versions: "
            + ", ".join(k.rsplit("/", 1)[-1] for k in store.kv_prefix(f"manifest/{release}/"))
        )
    entry = json.loads(saved)
    good = PipelineRelease.model_validate_json(entry["manifest"])
    commit = rt.source.resolve()
    snap = load_repo(rt.source.checkout(commit).root)
    envs = {n: snap.environment(n) for n in snap.environments}
    ctx = stage_context(stage, envs)
    rec = rt.reconciler
    started = datetime.now(UTC)
    failed_jobs = rec._versioned_job_names(good, ctx, current) if current and current != to_version else []
    plan, report = rec.converge(
        good,
        stage,
        ctx,
        RolloutInputs(serving_version=to_version, start_offsets=rec._start_offsets(good, ctx)),
        entry.get("commit"),
        "rollback",
        delete_jobs=failed_jobs,
    )
    if plan.refused or (report and report.failed):
        raise PipectlError(
            "rollback could not be applied: "
            + "; ".join(
                [a.describe() for a in plan.refused] + [o.message for o in (report.failed if report else [])]
            )
        )
    store.set_known_good(release, stage, to_version, entry.get("commit"), entry["manifest"])
    st = status.stages.setdefault(stage, StageStatus())
    st.version, st.phase, st.reason = current, Phase.ROLLED_BACK, "ManualRollback"
    st.message = f"{actor} rolled back to {to_version}"
    st.last_transition_time = datetime.now(UTC)
    store.put_status(release, status.model_dump(mode="json", by_alias=True))
    store.add_event(release, stage, "Warning", "ManualRollback", st.message)
    Ledger(store).append(
        AuditRecord(
            run_id=uuid.uuid4().hex,
            kind="rollback",
            release=release,
            version=to_version,
            stage=stage,
            git_commit=entry.get("commit"),
            outcome="rolledBack",
            actor=actor,
            reason="ManualRollback",
            message=f"{actor} rolled back {stage} from {current} to {to_version}",
            plan_summary=[a.describe() for a in plan.actions],
            started_at=started,
            finished_at=datetime.now(UTC),
        )
    )
    return f"rolled back {release} at {stage} to {to_version}; {current} is held there until a new version"


def _previous_manifest(store: Store, release: str, current: str | None) -> tuple[PipelineRelease, str] | None:
    from controller.model.identifiers import semver_key

    found = store.kv_prefix(f"manifest/{release}/")
    versions = sorted((k.rsplit("/", 1)[-1] for k in found), key=semver_key, reverse=True)
    for v in versions:
        if current is None or semver_key(v) < semver_key(current):
            return PipelineRelease.model_validate_json(
                json.loads(found[f"manifest/{release}/{v}"])["manifest"]
            ), v
    return None
