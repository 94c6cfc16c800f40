"""Diff rule for Kafka topics, and the config-value normalisation it compares with.

``diff_topic`` returns at most one action per topic:

- missing live → CREATE (reversible);
- partitions decreased → REFUSE ``PartitionDecrease`` (Kafka cannot shrink a topic);
- replication factor changed → REFUSE ``ReplicationFactorChange`` (needs a reassignment);
- partitions increased and/or config drift → one UPDATE; irreversible when partitions grow
  (keyed records re-hash to other partitions and the count can never come back down);
- live but not desired (a prune candidate) → DELETE (destructive) only when its name is in
  ``ctx.allow_delete``, else REFUSE ``DeleteNotApproved``;
- otherwise ``[]``.

A refusal carries every field change found (refused fields first) so people see the whole
picture; nothing of a refused topic is applied. Its reversibility tag is that of the change it
refuses (a partition decrease means recreating the topic: destructive).

Config drift is judged only for the keys the desired topic sets: live carries every config
(broker defaults included) and keys it has beyond those are never drift. Values are compared
after ``normalize_config_value`` — see its docstring for the exact rules.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import Enum

from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, FieldChange, Op, Reversibility
from controller.plan.resources import ResourceKind, TopicResource


class ConfigType(Enum):
    """How a topic config's value is compared (types as Kafka's ``LogConfig`` declares them)."""

    NUMBER = "number"  # INT, LONG, DOUBLE: compared numerically ("604800000" == "604800000.0")
    BOOLEAN = "boolean"  # "true"/"TRUE"/" True " are the same (Kafka parses booleans case-insensitively)
    ENUM = "enum"  # one word from a fixed set: compared case-insensitively
    LIST = "list"  # comma-separated set: order, spaces, duplicates and case don't matter
    STRING = "string"  # free text (e.g. message.format.version "3.0-IV1"): compared exactly, after strip


# Topic-level configs of Kafka 3.x. Keys not listed fall back to ``_guess`` (see below).
CONFIG_TYPES: dict[str, ConfigType] = {
    **dict.fromkeys(
        (
            "retention.ms", "retention.bytes", "segment.bytes", "segment.ms", "segment.jitter.ms",
            "segment.index.bytes", "flush.messages", "flush.ms", "max.message.bytes",
            "index.interval.bytes", "delete.retention.ms", "min.compaction.lag.ms",
            "max.compaction.lag.ms", "file.delete.delay.ms", "min.insync.replicas",
            "min.cleanable.dirty.ratio", "message.timestamp.difference.max.ms",
            "message.timestamp.before.max.ms", "message.timestamp.after.max.ms", "local.retention.ms",
            "local.retention.bytes", "compression.gzip.level", "compression.lz4.level",
            "compression.zstd.level",
        ),
        ConfigType.NUMBER,
    ),
    **dict.fromkeys(
        (
            "preallocate", "unclean.leader.election.enable", "message.downconversion.enable",
            "remote.storage.enable", "remote.log.copy.disable", "remote.log.delete.on.disable",
        ),
        ConfigType.BOOLEAN,
    ),
    **dict.fromkeys(("compression.type", "message.timestamp.type"), ConfigType.ENUM),
    **dict.fromkeys(
        (
            "cleanup.policy",
            "leader.replication.throttled.replicas",
            "follower.replication.throttled.replicas",
        ),
        ConfigType.LIST,
    ),
    "message.format.version": ConfigType.STRING,
}

_BOOLEANS = {"true", "false"}


def _number(text: str) -> Decimal | None:
    try:
        n = Decimal(text)
    except InvalidOperation:
        return None
    return n if n.is_finite() else None


def _guess(value: str) -> ConfigType:
    # An unknown key (a plugin's config, a newer Kafka's): numbers compare as numbers and booleans
    # as booleans, since any numeric or boolean config type Kafka has would parse them so.
    if _number(value) is not None:
        return ConfigType.NUMBER
    if value.lower() in _BOOLEANS:
        return ConfigType.BOOLEAN
    return ConfigType.STRING


def config_type(key: str, value: str) -> ConfigType:
    return CONFIG_TYPES.get(key) or _guess(value.strip())


def normalize_config_value(key: str, value: str) -> str:
    """The canonical form two equal values of config ``key`` share.

    - every value: surrounding whitespace is ignored;
    - NUMBER keys: the decimal value, without exponent or trailing zeros — ``604800000``,
      ``604800000.0`` and ``6.048E+8`` are equal, ``0.5`` equals ``0.50``; ``-1`` stays ``-1``;
    - BOOLEAN keys: lower case;
    - ENUM keys: lower case (``CreateTime`` == ``createtime``);
    - LIST keys: items stripped, lower-cased, de-duplicated and sorted — ``compact,delete`` ==
      ``delete, compact``;
    - STRING keys: exact (after strip).

    A value that does not parse as its key's type (e.g. ``"7d"`` for ``retention.ms``) is kept
    as is, so it differs from the live value and shows up as drift rather than being hidden.
    """
    v = value.strip()
    t = config_type(key, v)
    if t is ConfigType.NUMBER:
        n = _number(v)
        if n is None:
            return v
        if n == n.to_integral_value():
            return format(n.to_integral_value(), "f")
        return format(n.normalize(), "f")
    if t is ConfigType.BOOLEAN or t is ConfigType.ENUM:
        return v.lower()
    if t is ConfigType.LIST:
        return ",".join(sorted({item.strip().lower() for item in v.split(",") if item.strip()}))
    return v


def config_equal(key: str, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return normalize_config_value(key, a) == normalize_config_value(key, b)


def wire_config_value(key: str, value: str) -> str:
    """The value to send to Kafka for a desired config: what the broker's parser accepts.

    Numbers that are integral are sent without a fraction (Kafka's LONG/INT parsers reject
    ``604800000.0``, which a YAML float turns into); list items are stripped; the rest is sent
    stripped but otherwise as written (case included — Kafka validates that itself).
    """
    v = value.strip()
    t = config_type(key, v)
    if t is ConfigType.NUMBER:
        n = _number(v)
        if n is not None and n == n.to_integral_value():
            return format(n.to_integral_value(), "f")
        return v
    if t is ConfigType.LIST:
        return ",".join(item.strip() for item in v.split(",") if item.strip())
    return v


def config_drift(desired: dict[str, str], live: dict[str, str]) -> list[FieldChange]:
    """Changes for the keys ``desired`` sets whose live value differs (sorted by key)."""
    # ``new`` is what will be sent (604800000, not the manifest's 604800000.0): what Kafka will hold.
    return [
        FieldChange(field=f"config.{k}", old=live.get(k), new=wire_config_value(k, desired[k]))
        for k in sorted(desired)
        if not config_equal(k, live.get(k), desired[k])
    ]


def diff_topic(desired: TopicResource | None, live: TopicResource | None, ctx: DiffContext) -> list[Action]:
    if desired is None:
        return [_prune(live, ctx)] if live is not None else []
    if live is None:
        return [_create(desired)]

    refused: list[tuple[Reason, str, FieldChange]] = []
    if desired.partitions < live.partitions:
        refused.append(
            (
                Reason.PARTITION_DECREASE,
                f"Kafka cannot reduce partitions ({live.partitions} → {desired.partitions})",
                FieldChange(field="partitions", old=live.partitions, new=desired.partitions),
            )
        )
    if desired.replication_factor != live.replication_factor:
        refused.append(
            (
                Reason.REPLICATION_FACTOR_CHANGE,
                f"replication factor change ({live.replication_factor} → {desired.replication_factor}) "
                "needs a partition reassignment",
                FieldChange(
                    field="replication_factor", old=live.replication_factor, new=desired.replication_factor
                ),
            )
        )
    changes = config_drift(desired.config, live.config)
    if refused:
        return [
            Action(
                op=Op.REFUSE,
                kind=ResourceKind.TOPIC,
                name=desired.name,
                reason="refused: " + "; ".join(why for _, why, _ in refused),
                reason_code=str(refused[0][0]),
                # Tagged like the change it refuses: shrinking means recreating the topic (its data
                # lost); a reassignment to another replication factor can be undone.
                reversibility=Reversibility.DESTRUCTIVE
                if refused[0][0] is Reason.PARTITION_DECREASE
                else Reversibility.REVERSIBLE,
                changes=[c for _, _, c in refused] + changes,
                desired=desired,
            )
        ]

    reversibility = Reversibility.REVERSIBLE
    reasons: list[str] = []
    if desired.partitions > live.partitions:
        changes.insert(0, FieldChange(field="partitions", old=live.partitions, new=desired.partitions))
        reversibility = Reversibility.IRREVERSIBLE
        reasons.append("partition increase (cannot be undone; keyed records map to new partitions)")
    n_config = sum(1 for c in changes if c.field.startswith("config."))
    if n_config:
        reasons.append(f"config drift on {n_config} key{'s' if n_config > 1 else ''}")
    if not changes:
        return []
    return [
        Action(
            op=Op.UPDATE,
            kind=ResourceKind.TOPIC,
            name=desired.name,
            reason="; ".join(reasons),
            reversibility=reversibility,
            changes=changes,
            desired=desired,
        )
    ]


def _create(desired: TopicResource) -> Action:
    changes = [
        FieldChange(field="partitions", new=desired.partitions),
        FieldChange(field="replication_factor", new=desired.replication_factor),
    ] + [
        FieldChange(field=f"config.{k}", new=wire_config_value(k, desired.config[k]))
        for k in sorted(desired.config)
    ]
    return Action(
        op=Op.CREATE,
        kind=ResourceKind.TOPIC,
        name=desired.name,
        reason="topic does not exist",
        changes=changes,
        desired=desired,
    )


def _prune(live: TopicResource, ctx: DiffContext) -> Action:
    if live.name in ctx.allow_delete:
        return Action(
            op=Op.DELETE,
            kind=ResourceKind.TOPIC,
            name=live.name,
            reason="not desired any more; deletion approved",
            reversibility=Reversibility.DESTRUCTIVE,
        )
    return Action(
        op=Op.REFUSE,
        kind=ResourceKind.TOPIC,
        name=live.name,
        reason="not desired any more; deleting it (and its data) needs explicit approval",
        reason_code=str(Reason.DELETE_NOT_APPROVED),
        reversibility=Reversibility.DESTRUCTIVE,
    )
