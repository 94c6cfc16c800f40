"""Destructive changes wait for a person: which actions need an approval, what an approval binds
to, and what an approved action becomes (pure).

``settle`` runs after a kind's diff rule, on that rule's actions for one resource:

- a prune candidate (live, owned by the release, no longer declared; the rules refuse it with
  ``DeleteNotApproved``) becomes a DELETE *awaiting approval*: shown in the plan, never applied,
  and blocking nothing else; approved, it is the rule's DELETE;
- a refused partition decrease (Kafka cannot shrink a topic) awaits approval; approved, it is a
  REPLACE: the topic is deleted and created again with the desired partitions (its data is lost);
- a table refused only for dropped columns awaits approval; approved, it is the UPDATE a declared
  ``drop`` migration of those columns gives (destructive);
- other refusals stay refused: a partition-column, format or type change needs a new table, and no
  approval makes it applicable.

An approval (``Grant``) names the action id shown in the plan and ``approval_digest``: a sha256
over the action (id, reason, field changes) and fingerprints of its desired and live resources,
so an approval of one plan never approves another — a topic recreated with other partitions, a
DAG with another file, a later column drop. Fingerprints leave out what backends change on their
own (table properties such as ``transient_lastDdlTime``, a live topic's broker-default configs,
an incremental transform's partitions) and the owner's version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from controller.model.reasons import Reason
from controller.plan.actions import Action, Approval, DiffContext, Op, Reversibility
from controller.plan.resources import Migration, ResourceKind, TableResource, TopicResource
from controller.plan.rules import RULES

_VOLATILE: dict[str, set[str]] = {
    "Table": {"properties", "location"},
    "Dag": {"source", "paused"},
    "StreamingJob": {"running"},
    "Transform": {"partitions", "compiled_sql"},
}


def fingerprint(resource: Any, live: bool) -> Any:
    """What identifies ``resource`` for an approval (None for no resource)."""
    if resource is None:
        return None
    exclude = {"owner"} | _VOLATILE.get(str(resource.kind), set())
    if live and resource.kind == "Topic":
        exclude.add("config")  # live configs carry every broker default
    if resource.kind == "Table" and not resource.partitioning:
        exclude.add("partitioning")  # added for Iceberg: digests of other tables stay as they were
    return resource.model_dump(mode="json", exclude=exclude)


def approval_digest(action: Action, desired: Any, live: Any) -> str:
    doc = {
        "action": action.id,
        "reason_code": action.reason_code,
        "changes": [str(c) for c in action.changes],
        "desired": fingerprint(desired, live=False),
        "live": fingerprint(live, live=True),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


Approved = Callable[[], list[Action]]


def _prune(action: Action, live: Any, ctx: DiffContext) -> tuple[Action, Approved]:
    pending = action.model_copy(update={"op": Op.DELETE})

    def approved() -> list[Action]:
        allowed = ctx.model_copy(update={"allow_delete": ctx.allow_delete | {live.name}})
        return RULES[ResourceKind(live.kind)](None, live, allowed)

    return pending, approved


def _recreate(action: Action, desired: TopicResource) -> Approved:
    def approved() -> list[Action]:
        return [
            Action(
                op=Op.REPLACE,
                kind=ResourceKind.TOPIC,
                name=desired.name,
                reason=(
                    f"recreate the topic with {desired.partitions} partitions "
                    "(approved: deletes it and every record in it)"
                ),
                reversibility=Reversibility.DESTRUCTIVE,
                changes=action.changes,
                desired=desired,
            )
        ]

    return approved


def _column_drops(desired: TableResource, live: TableResource, ctx: DiffContext) -> Approved | None:
    declared = {(m.op, m.column) for m in desired.migrations}
    drops = [
        Migration(op="drop", column=c.name)
        for c in live.columns
        if c.name not in {d.name for d in desired.columns} and ("drop", c.name) not in declared
    ]
    with_drops = desired.model_copy(update={"migrations": [*desired.migrations, *drops]})
    converted = RULES[ResourceKind.TABLE](with_drops, live, ctx)
    if not converted or any(a.op is Op.REFUSE for a in converted):
        return None  # refused for more than the drops: an approval would not make it applicable
    return lambda: converted


def _conversion(action: Action, desired: Any, live: Any, ctx: DiffContext) -> tuple[Action, Approved] | None:
    """(the action as shown while awaiting approval, what it becomes once approved), or None when
    no approval applies to it."""
    if action.op is not Op.REFUSE or live is None:
        return None
    code = action.reason_code
    if code == Reason.DELETE_NOT_APPROVED and desired is None:
        return _prune(action, live, ctx)
    if code == Reason.PARTITION_DECREASE and isinstance(desired, TopicResource):
        return action, _recreate(action, desired)
    if code == Reason.COLUMN_DROP and isinstance(desired, TableResource) and isinstance(live, TableResource):
        approved = _column_drops(desired, live, ctx)
        return (action, approved) if approved is not None else None
    return None


def settle(actions: list[Action], desired: Any, live: Any, ctx: DiffContext) -> list[Action]:
    """One resource's actions with destructive ones marked as awaiting approval, or replaced by
    what they become when ``ctx`` holds an approval of their id and digest."""
    out: list[Action] = []
    for action in actions:
        conv = _conversion(action, desired, live, ctx)
        if conv is None:
            out.append(action)
            continue
        pending, approved = conv
        digest = approval_digest(pending, desired, live)
        grant = ctx.grant(pending.id, digest)
        if grant is None:
            out.append(pending.model_copy(update={"approval": Approval.REQUIRED, "approval_digest": digest}))
            continue
        marks = {"approval": Approval.APPROVED, "approval_digest": digest, "approved_by": grant.approver}
        out += [a.model_copy(update=marks) for a in approved()]
    return out
