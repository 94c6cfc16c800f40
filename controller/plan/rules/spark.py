"""Diff rule for Spark Structured Streaming jobs, and the field comparison it (and the adapter) uses.

``diff_job`` returns at most one action per job:

- desired but not live, or live but not running → CREATE (start) — unless the desired job is
  stopped (``running: false``): a job that should not run and does not run is converged;
- live running and ``running: false`` desired → UPDATE (graceful stop);
- version, entrypoint, entrypoint digest, args, conf or checkpoint differ on a running job →
  UPDATE (graceful stop after the current batch, then start), reversible;
- the live job belongs to another release → REFUSE ``NotOwned``;
- strategy ``inPlace`` and a change Spark cannot resume from the same checkpoint → REFUSE
  ``CheckpointIncompatible`` (below), whatever the job's running state;
- live but not desired (a prune candidate) → DELETE (stop and forget; the checkpoint is kept)
  only when its name is in ``ctx.allow_delete``, else REFUSE ``DeleteNotApproved``;
- otherwise ``[]``.

Checkpoint compatibility follows the Structured Streaming programming guide, "Recovery Semantics
after Changes in a Streaming Query": changing the number or type of input sources, the
subscribed topics, the output sink, or stateful operations (grouping keys, aggregates,
watermark/window) is not allowed on the same checkpoint. What pipectl can see of that, for
``inPlace`` (the new run reuses the live checkpoint):

- ``--topic`` changed (different subscription) — refused;
- ``--table`` changed (different sink) — refused;
- ``--checkpoint`` arg or the ``checkpoint`` field changed (that is not "in place") — refused,
  unless the job is in ``ctx.new_checkpoints``: the rollout restarts it on a fresh checkpoint from
  offsets it recorded (``controller.rollout.inplace``, a rollback of an in-place job);
- ``conf.spark.sql.shuffle.partitions`` changed: the state store's partitioning is fixed by the
  checkpoint and Spark silently keeps the checkpoint's value — refused;
- code (entrypoint digest) changed: allowed, with the reason saying that resuming requires
  compatible state and that stateful changes belong to blueGreen.

For ``blueGreen`` and ``canary`` every change is an UPDATE whose reason says the rollout strategy
handles it; until the progressive-delivery work lands, the runner starts the new version on its
own checkpoint directory ``<checkpoint>/v<version>`` (fresh state, so nothing is incompatible).
``strategy`` itself is never compared: it says how to roll a change out, it is not one.

Args are compared as options (``--name value`` / ``--name=value`` / bare ``--flag``): order
does not matter and each changed option is one field change (``args.--topic``). Args that do not
parse that way (positionals, repeated options) are compared as a whole list.
"""

from __future__ import annotations

from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, FieldChange, Op, Reversibility
from controller.plan.resources import ResourceKind, StreamingJobResource

IN_PLACE = "inPlace"

SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"

# Fields that an inPlace restart cannot change on the same checkpoint, with the why.
_INCOMPATIBLE: dict[str, str] = {
    "args.--topic": "the subscribed topics changed (Spark cannot resume a changed subscription)",
    "args.--table": "the output sink changed",
    "args.--checkpoint": "the checkpoint location changed",
    "checkpoint": "the checkpoint location changed",
    f"conf.{SHUFFLE_PARTITIONS}": (
        "spark.sql.shuffle.partitions is fixed by the checkpoint's state store (Spark keeps the old value)"
    ),
}

_CHECKPOINT = {"checkpoint", "args.--checkpoint"}

CODE_CHANGED_NOTE = (
    "code changed; resuming from the same checkpoint requires compatible state — "
    "use blueGreen for changes to stateful operations"
)


def parse_args(args: list[str]) -> dict[str, str] | None:
    """``--name value`` / ``--name=value`` / bare ``--flag`` → {"--name": value}; None if not parseable."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or tok == "--":
            return None
        if "=" in tok:
            key, value = tok.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, value = tok, args[i + 1]
            i += 2
        else:
            key, value = tok, "true"
            i += 1
        if key in out:
            return None
        out[key] = value
    return out


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name`` in ``args`` (last occurrence wins, as argparse does), else None."""
    value: str | None = None
    for i, tok in enumerate(args):
        if tok == name and i + 1 < len(args):
            value = args[i + 1]
        elif tok.startswith(name + "="):
            value = tok.split("=", 1)[1]
    return value


def _args_changes(old: list[str], new: list[str]) -> list[FieldChange]:
    po, pn = parse_args(old), parse_args(new)
    if po is None or pn is None:
        changes = [] if old == new else [FieldChange(field="args", old=" ".join(old), new=" ".join(new))]
        # Still name the checkpoint-relevant options so the compatibility check sees them.
        for opt in ("--topic", "--table", "--checkpoint"):
            o, n = option(old, opt), option(new, opt)
            if o != n:
                changes.append(FieldChange(field=f"args.{opt}", old=o, new=n))
        return changes
    return [
        FieldChange(field=f"args.{k}", old=po.get(k), new=pn.get(k))
        for k in sorted(po.keys() | pn.keys())
        if po.get(k) != pn.get(k)
    ]


def job_changes(desired: StreamingJobResource, live: StreamingJobResource) -> list[FieldChange]:
    """What differs in what would run (``running``, ``strategy`` and ``owner`` excluded)."""
    changes: list[FieldChange] = []
    for f in ("version", "entrypoint", "entrypoint_digest", "checkpoint"):
        old, new = getattr(live, f), getattr(desired, f)
        if old != new:
            changes.append(FieldChange(field=f, old=old, new=new))
    changes += _args_changes(live.args, desired.args)
    for k in sorted(live.conf.keys() | desired.conf.keys()):
        if live.conf.get(k) != desired.conf.get(k):
            changes.append(FieldChange(field=f"conf.{k}", old=live.conf.get(k), new=desired.conf.get(k)))
    return changes


def effective_checkpoint(job: StreamingJobResource) -> str:
    """Where the job keeps its state. Desired state already gives blue/green and canary jobs one
    checkpoint per version (``plan.desired.checkpoint_dir``), so this is the declared one."""
    return job.checkpoint


def _action(
    op: Op,
    job: StreamingJobResource,
    reason: str,
    *,
    reason_code: Reason | None = None,
    reversibility: Reversibility = Reversibility.REVERSIBLE,
    changes: list[FieldChange] | None = None,
    desired: StreamingJobResource | None = None,
) -> Action:
    return Action(
        op=op, kind=ResourceKind.STREAMING_JOB, name=job.name, reason=reason, reason_code=reason_code,
        reversibility=reversibility, changes=changes or [], desired=desired,
    )


def diff_job(
    desired: StreamingJobResource | None, live: StreamingJobResource | None, ctx: DiffContext
) -> list[Action]:
    if desired is None:
        return _prune(live, ctx) if live is not None else []
    if live is None:
        if not desired.running:
            return []
        return [_action(Op.CREATE, desired, "start the job", desired=desired)]

    if desired.owner and live.owner and desired.owner.release != live.owner.release:
        return [
            _action(
                Op.REFUSE, desired,
                f"job {live.name} belongs to release {live.owner.release}, not {desired.owner.release}",
                reason_code=Reason.NOT_OWNED, reversibility=Reversibility.IRREVERSIBLE, desired=desired,
            )
        ]

    changes = job_changes(desired, live)
    if not desired.running:
        if not live.running:
            return []
        return [
            _action(
                Op.UPDATE, desired, "stop the job gracefully (running: false)",
                changes=[FieldChange(field="running", old=True, new=False)], desired=desired,
            )
        ]

    if desired.strategy == IN_PLACE:
        moved = desired.name in ctx.new_checkpoints  # a decided restart from recorded offsets
        bad = [c for c in changes if c.field in _INCOMPATIBLE and not (moved and c.field in _CHECKPOINT)]
        if bad:
            why = "; ".join(dict.fromkeys(f"{c.field}: {_INCOMPATIBLE[c.field]}" for c in bad))
            return [
                _action(
                    Op.REFUSE, desired,
                    f"inPlace restart cannot resume from checkpoint {live.checkpoint}: {why} — "
                    "use strategy blueGreen (new checkpoint) for this change",
                    reason_code=Reason.CHECKPOINT_INCOMPATIBLE, reversibility=Reversibility.IRREVERSIBLE,
                    changes=bad + [c for c in changes if c not in bad], desired=desired,
                )
            ]

    if not live.running:
        reason = "not running: start it" + (" with the changed spec" if changes else "")
        if desired.strategy == IN_PLACE:
            reason += f" on checkpoint {desired.checkpoint}"
            if any(c.field == "entrypoint_digest" for c in changes):
                reason += f" ({CODE_CHANGED_NOTE})"
        return [_action(Op.CREATE, desired, reason, changes=changes, desired=desired)]

    if not changes:
        return []
    if desired.strategy == IN_PLACE:
        reason = f"stop after the current batch and restart on checkpoint {desired.checkpoint}"
        if any(c.field == "entrypoint_digest" for c in changes):
            reason += f" ({CODE_CHANGED_NOTE})"
    else:
        reason = (
            f"strategy {desired.strategy}: restart on checkpoint {effective_checkpoint(desired)} "
            "(progressive delivery deploys each version as its own job)"
        )
    return [_action(Op.UPDATE, desired, reason, changes=changes, desired=desired)]


def _prune(live: StreamingJobResource, ctx: DiffContext) -> list[Action]:
    if live.name in ctx.allow_delete:
        return [
            _action(
                Op.DELETE, live,
                f"not desired: stop the job and forget it (checkpoint {live.checkpoint} is kept)",
                reversibility=Reversibility.REVERSIBLE,
            )
        ]
    return [
        _action(
            Op.REFUSE, live, "not desired; deleting it needs explicit approval",
            reason_code=Reason.DELETE_NOT_APPROVED, reversibility=Reversibility.REVERSIBLE,
        )
    ]
