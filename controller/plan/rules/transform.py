"""Diff rule for SQL transforms (modified-only re-materialization, contracts, ownership).

``diff_transform(desired, live, ctx)`` returns at most one action:

- the desired transform (or a downstream one it feeds) breaks a declared column contract →
  REFUSE ``ContractBroken``, whatever the live state; the reason names the transform whose contract
  breaks and the upstream column the broken column now comes from (see
  ``controller.plan.transforms``), so nothing of the release is applied;
- missing live → CREATE ("materialize as <materialization>");
- the live name is held by something pipectl's transforms did not create (a table, a Spark view,
  a hand-made view), or by another release's transform → REFUSE ``NotOwned``;
- live ``digest`` equal to the desired one (and the table a ``table``/``incremental`` transform
  serves still exists) → ``[]``: nothing to re-run, however often it is planned;
- otherwise UPDATE (re-materialize), reversible: the previous materialization is kept beside the
  new one and swapped back by the same kind of action. The reason says why: ``compiled SQL
  changed``, ``upstream telemetry.host_metrics_1m changed to v1_1_0``, ``now reads …``/``no longer
  reads …``, ``materialized view → table``, ``partitionBy …``, ``the table it serves is missing``.
  Like dbt's ``state:modified+``: a changed upstream transform changes the digest of every
  transform below it, so they are re-run too, and nothing else is;
- live but not desired (a prune candidate) → DELETE if approved (destructive for ``table`` and
  ``incremental``: their data goes), else REFUSE ``DeleteNotApproved``.

``Action.depends_on`` of a transform action lists the upstream transforms (physical names) it must
run after: ``controller.plan.transforms.order_transform_actions`` orders by it.
"""

from __future__ import annotations

from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, FieldChange, Op, Reversibility
from controller.plan.resources import ResourceKind, TransformResource
from controller.plan.rules.airflow import short_digest as _short

_KIND = ResourceKind.TRANSFORM


def diff_transform(
    desired: TransformResource | None, live: TransformResource | None, ctx: DiffContext
) -> list[Action]:
    if desired is None:
        return [_prune(live, ctx)] if live is not None else []
    if desired.contract_breaks:
        return [
            Action(
                op=Op.REFUSE,
                kind=_KIND,
                name=desired.name,
                reason="refused: " + "; ".join(desired.contract_breaks),
                reason_code=str(Reason.CONTRACT_BROKEN),
                desired=desired,
                depends_on=list(desired.depends_on),
            )
        ]
    if live is None:
        where = f" (into {_table_of(desired)})" if desired.materialized != "view" else ""
        return [
            Action(
                op=Op.CREATE,
                kind=_KIND,
                name=desired.name,
                reason=f"transform does not exist; materialize as {desired.materialized}{where}",
                changes=[
                    FieldChange(field="materialized", new=desired.materialized),
                    FieldChange(field="digest", new=_short(desired.digest)),
                ],
                desired=desired,
                depends_on=list(desired.depends_on),
            )
        ]
    refusal = _ownership(desired, live)
    if refusal is not None:
        return [refusal]
    served_missing = live.materialized in {"table", "incremental"} and not live.relation
    if live.digest == desired.digest and not served_missing:
        return []

    reasons, changes = _why(desired, live)
    if served_missing and live.digest == desired.digest:
        reasons.append("the table it serves is missing")
    if not reasons:
        reasons.append("materialization digest changed")
        changes.append(FieldChange(field="digest", old=_short(live.digest), new=_short(desired.digest)))
    return [
        Action(
            op=Op.UPDATE,
            kind=_KIND,
            name=desired.name,
            reason="; ".join(reasons) + "; re-materialize",
            reversibility=Reversibility.REVERSIBLE,
            changes=changes,
            desired=desired,
            depends_on=list(desired.depends_on),
        )
    ]


def _why(desired: TransformResource, live: TransformResource) -> tuple[list[str], list[FieldChange]]:
    reasons: list[str] = []
    changes: list[FieldChange] = []
    if live.compiled_sql_digest != desired.compiled_sql_digest:
        reasons.append("compiled SQL changed")
        changes.append(
            FieldChange(
                field="compiled_sql_digest",
                old=_short(live.compiled_sql_digest) if live.compiled_sql_digest else None,
                new=_short(desired.compiled_sql_digest),
            )
        )
    if live.materialized != desired.materialized:
        reasons.append(f"materialized {live.materialized} → {desired.materialized}")
        changes.append(FieldChange(field="materialized", old=live.materialized, new=desired.materialized))
    if live.partition_by != desired.partition_by:
        reasons.append("partitionBy changed")
        changes.append(
            FieldChange(
                field="partition_by",
                old=", ".join(live.partition_by) or None,
                new=", ".join(desired.partition_by) or None,
            )
        )
    have = {u.ref: u for u in live.upstream}
    want = {u.ref: u for u in desired.upstream}
    for ref, u in want.items():
        old = have.get(ref)
        if old is None:
            reasons.append(f"now reads {ref}")
            changes.append(FieldChange(field=f"upstream.{ref}", new=u.label or _short(u.digest)))
        elif old.digest != u.digest:
            label = u.label or _short(u.digest)
            if u.kind == "transform":
                reasons.append(f"upstream transform {ref} changed ({label})")
            else:
                reasons.append(f"upstream {ref} changed to {label}")
            changes.append(
                FieldChange(field=f"upstream.{ref}", old=old.label or _short(old.digest), new=label)
            )
    for ref, old in have.items():
        if ref not in want:
            reasons.append(f"no longer reads {ref}")
            changes.append(FieldChange(field=f"upstream.{ref}", old=old.label or _short(old.digest)))
    return reasons, changes


def _table_of(desired: TransformResource) -> str:
    return f"{desired.name}__{desired.digest.partition(':')[2][:8]}"


def _ownership(desired: TransformResource, live: TransformResource) -> Action | None:
    want = desired.owner.release if desired.owner else None
    have = live.owner.release if live.owner else None
    if not live.managed:
        why = (
            f"{live.name} exists ({live.materialized}) and was not created by a pipectl transform; "
            "not replacing it"
        )
    elif want is not None and have is not None and want != have:
        why = f"transform {live.name} belongs to release {have!r}, not {want!r}"
    else:
        return None
    return Action(
        op=Op.REFUSE,
        kind=_KIND,
        name=desired.name,
        reason=why,
        reason_code=str(Reason.NOT_OWNED),
        desired=desired,
    )


def _prune(live: TransformResource, ctx: DiffContext) -> Action:
    tag = Reversibility.REVERSIBLE if live.materialized == "view" else Reversibility.DESTRUCTIVE
    if not live.managed:
        return Action(
            op=Op.REFUSE,
            kind=_KIND,
            name=live.name,
            reason=f"{live.name} was not created by a pipectl transform; not deleting it",
            reason_code=str(Reason.NOT_OWNED),
            reversibility=tag,
        )
    if live.name in ctx.allow_delete:
        return Action(
            op=Op.DELETE,
            kind=_KIND,
            name=live.name,
            reason="transform no longer declared; deletion approved (serving view and its tables)",
            reversibility=tag,
            desired=live,
        )
    return Action(
        op=Op.REFUSE,
        kind=_KIND,
        name=live.name,
        reason=f"transform {live.name} is no longer declared; deleting it needs explicit approval",
        reason_code=str(Reason.DELETE_NOT_APPROVED),
        reversibility=tag,
    )
