"""DAG schedules as a manifest gives them (``dags[].schedule``), checked the way Airflow reads them.

Airflow 2 turns a string schedule into a timetable: its presets (``@daily`` …) and ``@once`` /
``@continuous`` by name, anything else as a cron expression parsed by croniter. This module accepts
exactly those, plus ``None``/``null`` for a DAG that only runs when triggered, so a schedule that
passes ``pipectl validate`` is one Airflow can load. Tests: ``tests/unit/model/test_schedule.py``.
"""

from __future__ import annotations

from croniter import croniter

AIRFLOW_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
"""``airflow.utils.dates.cron_presets`` (Airflow 2.x)."""

AIRFLOW_SPECIAL = ("@once", "@continuous")
MANUAL = ("None", "none", "null")
"""How a YAML string may say "no schedule" (a YAML ``null`` means the same)."""


def normalize_schedule(text: str | None) -> str | None:
    """The schedule as pipectl hands it to Airflow: None for manual runs, a preset, or a cron
    expression with single spaces. Raises ValueError naming what is accepted."""
    if text is None or text.strip() in MANUAL:
        return None
    value = " ".join(text.split())
    if value in AIRFLOW_PRESETS or value in AIRFLOW_SPECIAL:
        return value
    if value.startswith("@"):
        raise ValueError(
            f"unknown schedule preset {value!r} (expected one of: "
            f"{', '.join(AIRFLOW_PRESETS + AIRFLOW_SPECIAL)}, a cron expression or null)"
        )
    if len(value.split(" ")) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"invalid schedule {value!r}: expected a 5-field cron expression (minute hour day-of-month "
            "month day-of-week, e.g. '*/15 * * * *'), an Airflow preset such as '@daily', or null"
        )
    return value
