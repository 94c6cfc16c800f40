"""Diff rule for Airflow DAGs.

A DAG is converged when its deployed file has the desired digest, Airflow reports the desired
``version:<v>`` tag, its paused state matches and, when the manifest sets ``dags[].schedule``,
Airflow reports that schedule (the sidecar carries it). Any of those differing is one reversible UPDATE
(redeploy and/or re-pause; deploying the previous file restores the previous version). A live DAG
that belongs to another release, or whose dag_id is defined by another file, is refused (NotOwned):
deploying ours would clash with it. That holds for a file another release deployed that Airflow
has not parsed yet (``reported=False``, its owner from the sidecar); one of ours not parsed yet is
created again (the adapter writes nothing new and waits for Airflow). A live DAG no longer desired,
parsed or not, is deleted only when approved.
"""

from __future__ import annotations

from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, FieldChange, Op, Reversibility
from controller.plan.resources import DagResource, ResourceKind

_KIND = ResourceKind.DAG


def short_digest(d: str) -> str:
    """``sha256:<12 hex>`` — enough to tell versions apart in a plan, short enough to read."""
    algo, sep, hexpart = d.partition(":")
    return f"{algo}:{hexpart[:12]}" if sep else d[:12]


def diff_dag(desired: DagResource | None, live: DagResource | None, ctx: DiffContext) -> list[Action]:
    if desired is None and live is None:
        return []
    if desired is not None and live is not None and not live.reported:
        # only its deployed file says it exists: it holds the dag_id, but there is nothing to
        # compare yet; ours is created again (nothing new is written, Airflow is waited for)
        refusal = _ownership(desired, live)
        if refusal is not None:
            return [refusal]
        live = None
    if desired is None:
        assert live is not None
        return [_prune(live, ctx)]
    if live is None:
        return [
            Action(
                op=Op.CREATE, kind=_KIND, name=desired.name, desired=desired,
                reason=f"DAG missing; deploy {desired.file_name} at version {desired.version}",
            )
        ]

    refusal = _ownership(desired, live)
    if refusal is not None:
        return [refusal]

    changes: list[FieldChange] = []
    if live.source_digest != desired.source_digest:
        changes.append(
            FieldChange(
                field="source_digest",
                old=short_digest(live.source_digest) if live.source_digest else None,
                new=short_digest(desired.source_digest),
            )
        )
    if live.version != desired.version:
        changes.append(FieldChange(field="version", old=live.version or None, new=desired.version))
    if desired.schedule_managed and live.schedule != desired.schedule:
        changes.append(FieldChange(field="schedule", old=live.schedule, new=desired.schedule))
    if live.paused != desired.paused:
        changes.append(FieldChange(field="paused", old=live.paused, new=desired.paused))
    if not changes:
        return []
    redeploy = any(c.field != "paused" for c in changes)
    reason = "redeploy DAG file" if redeploy else ("pause DAG" if desired.paused else "unpause DAG")
    return [
        Action(
            op=Op.UPDATE, kind=_KIND, name=desired.name, desired=desired, changes=changes,
            reason=reason, reversibility=Reversibility.REVERSIBLE,
        )
    ]


def _ownership(desired: DagResource, live: DagResource) -> Action | None:
    want = desired.owner.release if desired.owner else None
    have = live.owner.release if live.owner else None
    if have is not None and want is not None and have != want:
        why = f"DAG {live.name} belongs to release {have}, not {want}"
    elif live.file_name != desired.file_name:
        why = f"DAG {live.name} is defined by {live.file_name}, not {desired.file_name}"
    else:
        return None
    if not live.reported:
        why += " (its file is deployed; Airflow has not parsed it yet)"
    return Action(
        op=Op.REFUSE, kind=_KIND, name=desired.name, reason=why, reason_code=Reason.NOT_OWNED,
        reversibility=Reversibility.REVERSIBLE,
    )


def _prune(live: DagResource, ctx: DiffContext) -> Action:
    if live.name in ctx.allow_delete:
        return Action(
            op=Op.DELETE, kind=_KIND, name=live.name, desired=live,
            reason="DAG no longer declared; deletion approved (pause, remove file, delete run history)",
            reversibility=Reversibility.DESTRUCTIVE,
        )
    return Action(
        op=Op.REFUSE, kind=_KIND, name=live.name, reason_code=Reason.DELETE_NOT_APPROVED,
        reason=f"DAG {live.name} is no longer declared; deleting it drops its run history and needs approval",
        reversibility=Reversibility.DESTRUCTIVE,
    )
