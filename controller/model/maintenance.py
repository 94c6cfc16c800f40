"""Table maintenance an Iceberg table declares (``tables[].maintenance``, issue #16 item 5): when
it runs, how much data it keeps (the hot query window, enforced by dropping older partitions),
which snapshots it expires, whether it compacts small files and removes orphan files.

Manifest shape only; what a run does is ``controller.plan.maintenance`` (pure) and
``controller.engine.maintenance`` (the controller runs it on the stage's Spark Thrift Server).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from controller.model.base import Spec
from controller.model.schedule import AIRFLOW_SPECIAL, normalize_schedule

DAY = 86400.0
_UNITS = {"m": 60.0, "h": 3600.0, "d": DAY}


def parse_age(text: str) -> float:
    """'180d' → seconds; accepts m, h and d (a maintenance age is minutes at the least)."""
    m = re.fullmatch(r"\s*(\d+)\s*(m|h|d)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(
            f"invalid age {text!r}: expected a positive whole number of m, h or d (e.g. 180d, 12h)"
        )
    return int(m.group(1)) * _UNITS[m.group(2)]


def _age(text: str) -> str:
    parse_age(text)
    return text


Age = Annotated[str, AfterValidator(_age)]
"""A maintenance age in a manifest (``180d``, ``12h``, ``30m``)."""


class Retention(Spec):
    """Keep ``keep`` of data by ``column``; older partitions are dropped whole."""

    column: str = Field(
        description="A column the table is partitioned by a time transform of (days(column), ...): the "
        "cut-off is a partition boundary, so a run deletes whole partitions (no data file rewritten)."
    )
    keep: Age = Field(description="The hot query window, e.g. 180d.")


class SnapshotExpiry(Spec):
    """Expire snapshots older than ``olderThan`` (never the newest ``retainLast``, never one a
    recorded run or a rollback still needs: see ``keepAudited``)."""

    older_than: Age = "7d"
    retain_last: int = Field(default=1, ge=1)
    keep_audited: Age = Field(
        default="30d",
        description="Snapshots named by this release's audit records at the stage from this long ago on "
        "(and by its latest record, whatever its age) are kept, so `pipectl audit show RUN --query` and "
        "an in-place rollback still find them.",
    )


class OrphanFiles(Spec):
    """Delete files under the table's location that no snapshot references, older than ``olderThan``."""

    older_than: Age = Field(
        default="3d",
        description="At least 1d: Iceberg refuses less (a file being "
        "written by a concurrent commit is not referenced yet).",
    )

    @field_validator("older_than")
    @classmethod
    def _at_least_a_day(cls, v: str) -> str:
        if parse_age(v) < DAY:
            raise ValueError(
                f"olderThan {v!r} is under 1d: Iceberg refuses to remove orphan files younger "
                "than 24 hours (they may belong to a commit in progress)"
            )
        return v


class Compaction(Spec):
    """Rewrite small data files of a partition into fewer (``rewrite_data_files``, bin-pack)."""

    min_input_files: int = Field(
        default=5, ge=2, description="Compact a partition with at least this many files."
    )
    target_file_size_mb: int = Field(default=128, ge=1)


class TableMaintenance(Spec):
    schedule: str = Field(
        description="When runs are due (UTC): a 5-field cron expression or @hourly, @daily, "
        "@weekly, @monthly, @yearly. A missed run (controller down) runs once when it is back."
    )
    retention: Retention | None = None
    expire_snapshots: SnapshotExpiry | None = None
    remove_orphan_files: OrphanFiles | None = None
    compact: Compaction | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        value = normalize_schedule(v)  # cron and the presets checked as Airflow reads them
        if value is None or value in AIRFLOW_SPECIAL:
            raise ValueError(
                f"maintenance schedule {v!r}: expected a cron expression or @hourly, @daily, "
                "@weekly, @monthly, @yearly"
            )
        return value
