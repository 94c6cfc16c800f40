"""Column and partition rules for Apache Iceberg tables (``format: iceberg``), used by
``controller.plan.rules.hive.diff_table`` when both the desired and the live table are Iceberg.

Iceberg evolves a schema by field id, in the table metadata only: no data file is rewritten, and
rows written before a change read under the new schema. Each change is classified:

- a new column (anywhere after the kept ones: ``ADD COLUMNS`` appends) → UPDATE, reversible;
- a declared ``rename`` migration (column → to) → UPDATE, reversible: renaming back restores the
  name and every row keeps its value (the field id does not change). An undeclared rename (a live
  column gone, a new one of the same type in its place) → REFUSE ``ColumnRename``;
- a promotion int → bigint, float → double, decimal(P,S) → decimal(P',S) with P' > P → UPDATE,
  irreversible: Iceberg never narrows a type back. Any other type change → REFUSE
  ``ColumnTypeNarrowing``;
- a declared ``drop`` migration → UPDATE, destructive: a column added again under that name is a
  new field and does not see the old values. An undeclared drop → REFUSE ``ColumnDrop``;
- the kept columns in another order → REFUSE ``ColumnReorder`` (moving columns needs Iceberg's
  Spark SQL extensions, which the stack does not load);
- other partition transforms than the live table's → REFUSE ``PartitionColumnsChange``
  (partition spec evolution needs the same extensions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.model.iceberg import is_promotion, transform_column
from controller.model.identifiers import IdentifierError, normalize_hive_type
from controller.model.reasons import Reason
from controller.plan.actions import FieldChange, Reversibility
from controller.plan.resources import Column, Migration, TableResource

_SEVERITY = {Reversibility.REVERSIBLE: 0, Reversibility.IRREVERSIBLE: 1, Reversibility.DESTRUCTIVE: 2}


@dataclass
class IcebergColumnPlan:
    """Same fields as the Hive rule's column plan: planned changes, refusals, reasons, worst tag."""

    changes: list[FieldChange] = field(default_factory=list)
    refused: list[tuple[Reason, str, FieldChange]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    reversibility: Reversibility = Reversibility.REVERSIBLE

    def tag(self, r: Reversibility) -> None:
        self.reversibility = max(self.reversibility, r, key=_SEVERITY.__getitem__)


def _norm(t: str) -> str:
    try:
        return normalize_hive_type(t)
    except IdentifierError:
        return t.strip().lower()


def iceberg_partitioning_refusal(
    desired: TableResource, live: TableResource
) -> tuple[Reason, str, FieldChange] | None:
    """A refusal when the desired partition transforms differ from the live table's. A transform
    follows its column through a declared rename (Iceberg tracks its source by field id)."""
    renamed = _declared_renames(desired, live)
    have = [_renamed_transform(t, renamed) for t in live.partitioning]
    if desired.partitioning == have:
        return None
    return (
        Reason.PARTITION_COLUMNS_CHANGE,
        "the partition spec of an Iceberg table cannot change here (partition evolution needs "
        "Iceberg's Spark SQL extensions, not loaded by the stack); that needs a new table",
        FieldChange(
            field="partitioning",
            old=", ".join(live.partitioning) or "(none)",
            new=", ".join(desired.partitioning) or "(none)",
        ),
    )


def _renamed_transform(transform: str, renamed: dict[str, str]) -> str:
    """``days(c)`` → ``days(c2)`` when c was renamed to c2 (the column is always last)."""
    col = transform_column(transform)
    if col not in renamed:
        return transform
    return renamed[col] if transform == col else f"{transform[: -len(col) - 1]}{renamed[col]})"


def _declared_renames(desired: TableResource, live: TableResource) -> dict[str, str]:
    """Declared renames (old → new) whose old column is live and whose new name is free."""
    want = {c.name for c in desired.columns}
    have = {c.name for c in live.columns}
    return {
        m.column: m.to
        for m in desired.migrations
        if m.op == "rename"
        and m.to
        and m.column in have
        and m.column not in want
        and m.to in want
        and m.to not in have
    }


def iceberg_column_plan(desired: TableResource, live: TableResource) -> IcebergColumnPlan:
    out = IcebergColumnPlan()
    declared: dict[tuple[str, str], Migration] = {(m.op, m.column): m for m in desired.migrations}
    want = {c.name: _norm(c.type) for c in desired.columns}
    renamed = _declared_renames(desired, live)
    for old, new in renamed.items():
        out.changes.append(FieldChange(field=f"columns.{old}.name", old=old, new=new))
        out.reasons.append(f"rename column {old} → {new} (declared migration; by field id, no rewrite)")
    live_cols = [Column(name=renamed.get(c.name, c.name), type=_norm(c.type)) for c in live.columns]
    live_names = [c.name for c in live_cols]
    new_cols = [c.name for c in desired.columns if c.name not in live_names]
    _plan_gone(out, desired, live_cols, want, new_cols, declared)
    kept_live = [n for n in live_names if n in want]
    kept_want = [c.name for c in desired.columns if c.name in live_names]
    if kept_live != kept_want:
        out.refused.append(
            (
                Reason.COLUMN_REORDER,
                "columns would be reordered; moving a column of an Iceberg table needs Iceberg's Spark SQL "
                "extensions, which the stack does not load",
                FieldChange(field="columns.order", old=", ".join(kept_live), new=", ".join(kept_want)),
            )
        )
    last_kept = max((i for i, c in enumerate(desired.columns) if c.name in live_names), default=-1)
    inserted = [n for n in new_cols if [c.name for c in desired.columns].index(n) < last_kept]
    if inserted:
        out.refused.append(
            (
                Reason.COLUMN_REORDER,
                f"new column(s) {', '.join(inserted)} would go before existing columns; ADD COLUMNS appends",
                FieldChange(
                    field="columns.order",
                    old=", ".join(live_names),
                    new=", ".join(c.name for c in desired.columns),
                ),
            )
        )
    _plan_types(out, live_cols, want)
    added = [n for n in new_cols if n not in inserted]
    for n in added:
        out.changes.append(FieldChange(field=f"columns.{n}", old=None, new=want[n]))
    if added:
        out.reasons.append(f"add column{'s' if len(added) > 1 else ''} {', '.join(added)} at the end")
    return out


def _plan_gone(
    out: IcebergColumnPlan,
    desired: TableResource,
    live_cols: list[Column],
    want: dict[str, str],
    new_cols: list[str],
    declared: dict[tuple[str, str], Migration],
) -> None:
    """Live columns gone from desired: undeclared renames refused (and taken out of ``new_cols``),
    declared drops planned, other drops refused."""
    for i, c in enumerate(live_cols):
        if c.name in want:
            continue
        cand = desired.columns[i].name if i < len(desired.columns) else None
        if cand is not None and cand in new_cols and want[cand] == c.type:
            new_cols.remove(cand)
            out.refused.append(
                (
                    Reason.COLUMN_RENAME,
                    f"column {c.name} would be renamed to {cand} without a declared rename migration",
                    FieldChange(field=f"columns.{c.name}.name", old=c.name, new=cand),
                )
            )
        elif ("drop", c.name) in declared:
            out.changes.append(FieldChange(field=f"columns.{c.name}", old=c.type, new=None))
            out.reasons.append(f"drop column {c.name} (declared migration; files keep the values)")
            out.tag(Reversibility.DESTRUCTIVE)
        else:
            out.refused.append(
                (
                    Reason.COLUMN_DROP,
                    f"column {c.name} would be dropped without a declared drop migration",
                    FieldChange(field=f"columns.{c.name}", old=c.type, new=None),
                )
            )


def _plan_types(out: IcebergColumnPlan, live_cols: list[Column], want: dict[str, str]) -> None:
    for c in live_cols:
        new = want.get(c.name)
        if new is None or new == c.type:
            continue
        change = FieldChange(field=f"columns.{c.name}.type", old=c.type, new=new)
        if is_promotion(c.type, new):
            out.changes.append(change)
            out.reasons.append(f"widen column {c.name} {c.type} → {new} (Iceberg type promotion, no rewrite)")
            out.tag(Reversibility.IRREVERSIBLE)
        else:
            out.refused.append(
                (
                    Reason.COLUMN_TYPE_NARROWING,
                    f"column {c.name} {c.type} → {new} is not an Iceberg type promotion (int → bigint, "
                    "float → double, decimal precision up)",
                    change,
                )
            )
