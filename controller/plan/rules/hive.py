"""Diff rules for Hive databases, tables and serving views.

``diff_database``: missing → CREATE; present → ``[]``; prune → DELETE (approved) or REFUSE
``DeleteNotApproved``. Databases carry no owner: several releases may share one.

``diff_table`` returns at most one action per table (an action id is kind/name/op):

- missing live → CREATE (reversible: the new table is empty);
- live owned by another release, or by none (its ``pipectl.release`` property differs from the
  desired one) → REFUSE ``NotOwned``, nothing else is judged;
- partition columns differ → REFUSE ``PartitionColumnsChange``; storage format differs →
  REFUSE ``TableFormatChange`` (both need a new table);
- a live column missing from desired, while desired has a new column of the same type at the same
  position → a rename: REFUSE ``ColumnRename`` unless a ``rename`` migration (column → to) is
  declared, then UPDATE (irreversible: rows written before keep the old name in their files, so
  readers that match columns by name — Spark, and Presto for Parquet on the stack — read them as
  NULL under the new name);
- a live column missing from desired → REFUSE ``ColumnDrop`` unless a ``drop`` migration is
  declared, then UPDATE (destructive). Declared drops and renames are planned, but only Presto
  can apply them, and only where its Hive catalog allows it (``hive.allow-drop-column`` /
  ``hive.allow-rename-column``); elsewhere the adapter fails the action and changes nothing;
- the kept columns in another order, or a new column anywhere but after every kept column →
  REFUSE ``ColumnReorder`` (Hive appends new columns; no engine of the stack can move one, so a
  ``reorder`` migration cannot be applied either and is refused with that reason);
- a type change: narrowing (or any non-widening change) → REFUSE ``ColumnTypeNarrowing``; widening
  (int→bigint, float→double, varchar(n)→string, decimal precision up, …) → REFUSE
  ``ColumnTypeChange``, because neither Spark 3.5 (``ALTER TABLE CHANGE COLUMN`` only changes
  comments of v1 tables) nor PrestoDB can change a column type in place — a declared ``retype``
  migration is refused the same way, with that explanation;
- new columns at the end → UPDATE (reversible); desired property keys whose live value differs →
  UPDATE (reversible). Only keys the desired table sets are compared, so properties Hive and Spark
  add themselves (``transient_lastDdlTime``, ``spark.sql.*``) are never drift;
- both Iceberg (``format: iceberg``): columns and partition transforms by ``rules.iceberg`` instead;
- live but not desired (a prune candidate) → DELETE (destructive) if approved, else REFUSE
  ``DeleteNotApproved``.

A refusal is one REFUSE action carrying every refused change (its ``reason_code`` is the first
found, in the order above) plus the changes that would otherwise be applied; nothing of a refused
table is applied. It is tagged like the worst change it refuses. An UPDATE is tagged like its worst
part. ``location`` is not compared (it is only used when creating).

``diff_view``: missing → CREATE; the live view selects from another table, from other time
segments (a blue/green view stitched by ``time_column``), on another time column or other columns
→ REPLACE (reversible: ``CREATE OR REPLACE VIEW`` swaps it atomically); same → ``[]``; prune →
DELETE (reversible: a view holds no data) if approved, else REFUSE ``DeleteNotApproved``. A plain
view and a view of one segment without ``since`` are the same thing (its target, whole). A key
split (key-subset canary, ``controller.plan.keysplit``) is compared as it serves: at 0 % it is the
stable segments alone, at 100 % the canary segments alone, in between its columns, percent (or key
list) and canary segments; any difference is one REPLACE.
"""

from __future__ import annotations

import re

from controller.model.identifiers import IdentifierError, normalize_hive_type
from controller.model.reasons import Reason
from controller.plan.actions import Action, DiffContext, FieldChange, Op, Reversibility
from controller.plan.keysplit import BUCKETS, served_split, split_share, split_text
from controller.plan.resources import (
    Column,
    DatabaseResource,
    Migration,
    ResourceKind,
    TableResource,
    ViewResource,
)
from controller.plan.rules.iceberg import iceberg_column_plan, iceberg_partitioning_refusal

OWNER_PROPERTY = "pipectl.release"
VERSION_PROPERTY = "pipectl.version"


# --- databases --------------------------------------------------------------------------------


def diff_database(
    desired: DatabaseResource | None, live: DatabaseResource | None, ctx: DiffContext
) -> list[Action]:
    if desired is None:
        return [_prune(ResourceKind.DATABASE, live, ctx, Reversibility.DESTRUCTIVE)] if live else []
    if live is None:
        return [
            Action(
                op=Op.CREATE,
                kind=ResourceKind.DATABASE,
                name=desired.name,
                reason="database does not exist",
                desired=desired,
            )
        ]
    return []


# --- types ------------------------------------------------------------------------------------

_INT_RANK = {"tinyint": 1, "smallint": 2, "int": 3, "bigint": 4}
_INT_DIGITS = {"tinyint": 3, "smallint": 5, "int": 10, "bigint": 19}
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")
_SIZED = re.compile(r"(varchar|char)\((\d+)\)")


def normalize_type(text: str) -> str:
    """Canonical spelling of a Hive type; a type pipectl cannot parse is kept (lower-cased) as is."""
    try:
        return normalize_hive_type(text)
    except IdentifierError:
        return text.strip().lower()


def is_widening(old: str, new: str) -> bool:
    """Whether every value of type ``old`` is exactly representable in ``new`` (and they differ)."""
    old, new = normalize_type(old), normalize_type(new)
    if old == new:
        return False
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[new] > _INT_RANK[old]
    if old in {"tinyint", "smallint", "float"} and new in {"float", "double"}:
        return not (old == "float" and new == "float")
    if old == "int" and new == "double":
        return True
    dn = _DECIMAL.fullmatch(new)
    if old in _INT_DIGITS and dn:
        precision, scale = int(dn.group(1)), int(dn.group(2))
        return precision - scale >= _INT_DIGITS[old]
    do = _DECIMAL.fullmatch(old)
    if do and dn:
        p1, s1, p2, s2 = int(do.group(1)), int(do.group(2)), int(dn.group(1)), int(dn.group(2))
        return s2 >= s1 and p2 - s2 >= p1 - s1
    so, sn = _SIZED.fullmatch(old), _SIZED.fullmatch(new)
    if so and new == "string":
        return True
    if so and sn and so.group(1) == sn.group(1) == "varchar":
        return int(sn.group(2)) > int(so.group(2))
    return False


def _col(c: Column) -> str:
    return f"{c.name} {normalize_type(c.type)}"


def _cols(cs: list[Column]) -> str:
    return ", ".join(_col(c) for c in cs) if cs else "(none)"


# --- tables -----------------------------------------------------------------------------------


def diff_table(desired: TableResource | None, live: TableResource | None, ctx: DiffContext) -> list[Action]:
    if desired is None:
        return [_prune(ResourceKind.TABLE, live, ctx, Reversibility.DESTRUCTIVE)] if live else []
    if live is None:
        return [_create_table(desired)]

    owner = desired.properties.get(OWNER_PROPERTY) or (desired.owner.release if desired.owner else None)
    live_owner = live.properties.get(OWNER_PROPERTY)
    if owner is not None and live_owner != owner:
        who = f"release {live_owner!r}" if live_owner else "no pipectl release"
        return [
            _refuse(
                desired,
                [(Reason.NOT_OWNED, f"the live table belongs to {who}, not to {owner!r}")],
                [FieldChange(field=f"properties.{OWNER_PROPERTY}", old=live_owner, new=owner)],
                Reversibility.REVERSIBLE,
            )
        ]

    refused: list[tuple[Reason, str]] = []
    refused_changes: list[FieldChange] = []

    def refuse(reason: Reason, why: str, change: FieldChange) -> None:
        refused.append((reason, why))
        refused_changes.append(change)

    live_parts = [(c.name, normalize_type(c.type)) for c in live.partition_columns]
    want_parts = [(c.name, normalize_type(c.type)) for c in desired.partition_columns]
    if live_parts != want_parts:
        refuse(
            Reason.PARTITION_COLUMNS_CHANGE,
            "partition columns of an existing table cannot change; that needs a new table",
            FieldChange(
                field="partition_columns",
                old=_cols(live.partition_columns),
                new=_cols(desired.partition_columns),
            ),
        )
    if live.format.lower() != desired.format.lower():
        refuse(
            Reason.TABLE_FORMAT_CHANGE,
            f"storage format {live.format} → {desired.format} needs a new table",
            FieldChange(field="format", old=live.format.lower(), new=desired.format.lower()),
        )

    iceberg = desired.format.lower() == live.format.lower() == "iceberg"
    plan = iceberg_column_plan(desired, live) if iceberg else _column_plan(desired, live)
    if iceberg and (part := iceberg_partitioning_refusal(desired, live)) is not None:
        refuse(*part)
    for reason, why, change in plan.refused:
        refuse(reason, why, change)
    changes = plan.changes + _property_drift(desired.properties, live.properties)

    if refused:
        tag = _worst([_REFUSED_TAG[r] for r, _ in refused])
        return [_refuse(desired, refused, refused_changes + changes, tag)]
    if not changes:
        return []
    reasons = plan.reasons[:]
    n_props = sum(1 for c in changes if c.field.startswith("properties."))
    if n_props:
        reasons.append(f"{n_props} propert{'ies differ' if n_props > 1 else 'y differs'}")
    return [
        Action(
            op=Op.UPDATE,
            kind=ResourceKind.TABLE,
            name=desired.name,
            reason="; ".join(reasons),
            reversibility=plan.reversibility,
            changes=changes,
            desired=desired,
        )
    ]


# A refusal is tagged like the change it refuses: partition and format changes need a new table and
# a drop or a narrowing loses values (destructive); a rename or a widening cannot be taken back
# without loss (irreversible); reordering or taking over a table could be undone.
_REFUSED_TAG = {
    Reason.NOT_OWNED: Reversibility.REVERSIBLE,
    Reason.PARTITION_COLUMNS_CHANGE: Reversibility.DESTRUCTIVE,
    Reason.TABLE_FORMAT_CHANGE: Reversibility.DESTRUCTIVE,
    Reason.COLUMN_DROP: Reversibility.DESTRUCTIVE,
    Reason.COLUMN_RENAME: Reversibility.IRREVERSIBLE,
    Reason.COLUMN_REORDER: Reversibility.REVERSIBLE,
    Reason.COLUMN_TYPE_NARROWING: Reversibility.DESTRUCTIVE,
    Reason.COLUMN_TYPE_CHANGE: Reversibility.IRREVERSIBLE,
}


class _ColumnPlan:
    def __init__(self) -> None:
        self.changes: list[FieldChange] = []
        self.refused: list[tuple[Reason, str, FieldChange]] = []
        self.reasons: list[str] = []
        self.reversibility = Reversibility.REVERSIBLE


def _column_plan(desired: TableResource, live: TableResource) -> _ColumnPlan:
    out = _ColumnPlan()
    migrations: dict[tuple[str, str], Migration] = {(m.op, m.column): m for m in desired.migrations}
    want = {c.name: normalize_type(c.type) for c in desired.columns}
    have = {c.name: normalize_type(c.type) for c in live.columns}
    want_order = [c.name for c in desired.columns]

    renamed = _declared_renames(migrations, want, have)
    for old_name, new_name in renamed.items():
        out.changes.append(FieldChange(field=f"columns.{old_name}.name", old=old_name, new=new_name))
        out.reasons.append(f"rename column {old_name} → {new_name} (declared migration)")
        out.reversibility = _worst([out.reversibility, Reversibility.IRREVERSIBLE])

    # Live columns as they will be named once the declared renames are applied.
    live_cols = [(renamed.get(c.name, c.name), normalize_type(c.type)) for c in live.columns]
    live_names = [n for n, _ in live_cols]
    missing = [i for i, (n, _) in enumerate(live_cols) if n not in want]
    new = [n for n in want_order if n not in live_names]

    _plan_missing(out, desired, live_cols, want, missing, new, migrations)
    inserted = _plan_order(out, live_names, want_order, new, migrations)
    _plan_types(out, live_cols, want, migrations)

    added = [n for n in new if n not in inserted]
    for n in added:
        out.changes.append(FieldChange(field=f"columns.{n}", old=None, new=want[n]))
    if added:
        out.reasons.append(f"add column{'s' if len(added) > 1 else ''} {', '.join(added)} at the end")
    return out


def _declared_renames(
    migrations: dict[tuple[str, str], Migration], want: dict[str, str], have: dict[str, str]
) -> dict[str, str]:
    """Declared renames (old → new) whose old column is still live and whose new name is free."""
    renamed: dict[str, str] = {}
    for (op, column), m in migrations.items():
        if (
            op == "rename"
            and m.to
            and column in have
            and column not in want
            and m.to in want
            and m.to not in have
        ):
            renamed[column] = m.to
    return renamed


def _plan_missing(
    out: _ColumnPlan,
    desired: TableResource,
    live_cols: list[tuple[str, str]],
    want: dict[str, str],
    missing: list[int],
    new: list[str],
    migrations: dict[tuple[str, str], Migration],
) -> None:
    """Live columns gone from desired (``missing``: their positions in ``live_cols``): undeclared
    renames are refused (and taken out of ``missing`` and ``new``), then declared drops are planned
    and the other drops refused."""
    # An undeclared rename: a live column gone and a new one of the same type in its place.
    for i in list(missing):
        name, typ = live_cols[i]
        if i < len(desired.columns):
            cand = desired.columns[i].name
            if cand in new and want[cand] == typ:
                missing.remove(i)
                new.remove(cand)
                out.refused.append(
                    (
                        Reason.COLUMN_RENAME,
                        f"column {name} would be renamed to {cand} without a declared rename migration",
                        FieldChange(field=f"columns.{name}.name", old=name, new=cand),
                    )
                )
    for i in missing:
        name, typ = live_cols[i]
        if ("drop", name) in migrations:
            out.changes.append(FieldChange(field=f"columns.{name}", old=typ, new=None))
            out.reasons.append(f"drop column {name} (declared migration)")
            out.reversibility = Reversibility.DESTRUCTIVE
        else:
            out.refused.append(
                (
                    Reason.COLUMN_DROP,
                    f"column {name} would be dropped without a declared drop migration",
                    FieldChange(field=f"columns.{name}", old=typ, new=None),
                )
            )


def _plan_order(
    out: _ColumnPlan,
    live_names: list[str],
    want_order: list[str],
    new: list[str],
    migrations: dict[tuple[str, str], Migration],
) -> list[str]:
    """Refuse kept columns in another order and new columns before kept ones (Hive appends new
    columns only); returns those new columns that would be inserted."""
    kept_live = [n for n in live_names if n in want_order]
    kept_want = [n for n in want_order if n in live_names]
    if kept_live != kept_want:
        declared = any(("reorder", n) in migrations for n in kept_want)
        out.refused.append(
            (
                Reason.COLUMN_REORDER,
                "columns would be reordered"
                + (
                    " (the declared reorder migration cannot be applied: neither Spark 3.5 nor PrestoDB "
                    "can move a column of a Hive table)"
                    if declared
                    else " without a declared reorder migration"
                ),
                FieldChange(field="columns.order", old=", ".join(kept_live), new=", ".join(kept_want)),
            )
        )
    last_kept = max((want_order.index(n) for n in kept_want), default=-1)
    inserted = [n for n in new if want_order.index(n) < last_kept]
    if inserted:
        out.refused.append(
            (
                Reason.COLUMN_REORDER,
                f"new column{'s' if len(inserted) > 1 else ''} {', '.join(inserted)} would go before "
                "existing columns; Hive can only add columns at the end",
                FieldChange(
                    field="columns.order", old=", ".join(live_names), new=", ".join(n for n in want_order)
                ),
            )
        )
    return inserted


def _plan_types(
    out: _ColumnPlan,
    live_cols: list[tuple[str, str]],
    want: dict[str, str],
    migrations: dict[tuple[str, str], Migration],
) -> None:
    """Refuse every type change of a kept column: a narrowing one, and a widening one too (no engine
    of the stack changes a column type in place)."""
    for name, typ in live_cols:
        if name not in want or want[name] == typ:
            continue
        change = FieldChange(field=f"columns.{name}.type", old=typ, new=want[name])
        declared = ("retype", name) in migrations
        note = " (the declared retype migration cannot be applied in place either)" if declared else ""
        if is_widening(typ, want[name]):
            out.refused.append(
                (
                    Reason.COLUMN_TYPE_CHANGE,
                    f"widening column {name} {typ} → {want[name]}: neither Spark 3.5 (ALTER TABLE "
                    "CHANGE COLUMN only changes comments of Hive tables) nor PrestoDB can change a column "
                    f"type in place; add a new column or write a new table version{note}",
                    change,
                )
            )
        else:
            out.refused.append(
                (
                    Reason.COLUMN_TYPE_NARROWING,
                    f"column {name} {typ} → {want[name]} is not a widening conversion (values would be lost)"
                    + note,
                    change,
                )
            )


def _property_drift(desired: dict[str, str], live: dict[str, str]) -> list[FieldChange]:
    return [
        FieldChange(field=f"properties.{k}", old=live.get(k), new=desired[k])
        for k in sorted(desired)
        if live.get(k) != desired[k]
    ]


def _create_table(desired: TableResource) -> Action:
    changes = [FieldChange(field="columns", new=_cols(desired.columns))]
    if desired.partition_columns:
        changes.append(FieldChange(field="partition_columns", new=_cols(desired.partition_columns)))
    if desired.partitioning:
        changes.append(FieldChange(field="partitioning", new=", ".join(desired.partitioning)))
    changes.append(FieldChange(field="format", new=desired.format.lower()))
    changes += [
        FieldChange(field=f"properties.{k}", new=desired.properties[k]) for k in sorted(desired.properties)
    ]
    return Action(
        op=Op.CREATE,
        kind=ResourceKind.TABLE,
        name=desired.name,
        reason="table does not exist",
        changes=changes,
        desired=desired,
    )


def _refuse(
    desired: TableResource,
    refused: list[tuple[Reason, str]],
    changes: list[FieldChange],
    reversibility: Reversibility,
) -> Action:
    return Action(
        op=Op.REFUSE,
        kind=ResourceKind.TABLE,
        name=desired.name,
        reason="refused: " + "; ".join(why for _, why in refused),
        reason_code=str(refused[0][0]),
        reversibility=reversibility,
        changes=changes,
        desired=desired,
    )


_SEVERITY = {Reversibility.REVERSIBLE: 0, Reversibility.IRREVERSIBLE: 1, Reversibility.DESTRUCTIVE: 2}


def _worst(tags: list[Reversibility]) -> Reversibility:
    return max(tags, key=_SEVERITY.__getitem__, default=Reversibility.REVERSIBLE)


# --- views ------------------------------------------------------------------------------------


def diff_view(desired: ViewResource | None, live: ViewResource | None, ctx: DiffContext) -> list[Action]:
    if desired is None:
        return [_prune(ResourceKind.VIEW, live, ctx, Reversibility.REVERSIBLE)] if live else []
    want = _served(desired)
    if live is None:
        changes = [_segments_change(None, want)]
        if (split := served_split(desired)) is not None:
            changes.append(FieldChange(field="key_split", new=split_text(split)))
        if len(want) > 1 or want[0][1] is not None:
            changes.append(FieldChange(field="time_column", new=desired.time_column))
        if desired.columns:
            changes.append(FieldChange(field="columns", new=", ".join(desired.columns)))
        return [
            Action(
                op=Op.CREATE,
                kind=ResourceKind.VIEW,
                name=desired.name,
                reason="view does not exist",
                changes=changes,
                desired=desired,
            )
        ]
    have = _served(live)
    changes = []
    reasons: list[str] = []
    if served_split(live) != served_split(desired):
        # a key split at 0 % is the stable side alone, at 100 % the canary side alone
        old_split, new_split = split_text(served_split(live)), split_text(served_split(desired))
        changes.append(FieldChange(field="key_split", old=old_split, new=new_split))
        reasons.append("the keys each version serves change")
    if have != want:
        changes.append(_segments_change(have, want))
        reasons.append("the view selects from other tables")
    stitched = len(want) > 1 or want[0][1] is not None
    if stitched and live.time_column != desired.time_column:
        changes.append(FieldChange(field="time_column", old=live.time_column, new=desired.time_column))
        reasons.append("the segments are cut on another column")
    if live.columns != desired.columns:
        changes.append(
            FieldChange(
                field="columns", old=", ".join(live.columns) or "*", new=", ".join(desired.columns) or "*"
            )
        )
        reasons.append("the view selects other columns")
    if not changes:
        return []
    return [
        Action(
            op=Op.REPLACE,
            kind=ResourceKind.VIEW,
            name=desired.name,
            reason="; ".join(reasons) + "; replaced atomically",
            changes=changes,
            desired=desired,
        )
    ]


def _served(view: ViewResource) -> list[tuple[str, str | None]]:
    """The (table, since) stretches serving the keys outside any split (all keys at 100 %: the
    canary side's)."""
    s = view.key_split
    if s is not None and split_share(s) == BUCKETS:
        return [(g.table, g.since) for g in s.segments]
    return view_segments(view)


def view_segments(view: ViewResource) -> list[tuple[str, str | None]]:
    """The (table, since) stretches a view serves; a plain view is one stretch of its target."""
    if view.segments:
        return [(s.table, s.since) for s in view.segments]
    return [(view.target, None)]


def _segments_change(
    old: list[tuple[str, str | None]] | None, new: list[tuple[str, str | None]]
) -> FieldChange:
    def plain(segs: list[tuple[str, str | None]] | None) -> bool:
        return segs is None or (len(segs) == 1 and segs[0][1] is None)

    def fmt(segs: list[tuple[str, str | None]] | None) -> str | None:
        if segs is None:
            return None
        return ", ".join(t if since is None else f"{t} from {since}" for t, since in segs)

    if plain(old) and plain(new):
        return FieldChange(field="target", old=old[0][0] if old else None, new=new[0][0])
    return FieldChange(field="segments", old=fmt(old), new=fmt(new))


def _prune(
    kind: ResourceKind,
    live: DatabaseResource | TableResource | ViewResource,
    ctx: DiffContext,
    reversibility: Reversibility,
) -> Action:
    what = kind.lower()
    if live.name in ctx.allow_delete:
        return Action(
            op=Op.DELETE,
            kind=kind,
            name=live.name,
            reason="not desired any more; deletion approved",
            reversibility=reversibility,
        )
    return Action(
        op=Op.REFUSE,
        kind=kind,
        name=live.name,
        reason=f"not desired any more; deleting the {what} needs explicit approval",
        reason_code=str(Reason.DELETE_NOT_APPROVED),
        reversibility=reversibility,
    )
