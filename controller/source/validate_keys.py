"""Validation of key-subset canary serving (``streamingJobs[].keys``) against the release: each key
column must be a column (or partition column) of every sink table of the job that the release
declares. Reported at ``spec.streamingJobs[i].keys.columns[j]`` with the file and line."""

from __future__ import annotations

from collections.abc import Callable

from controller.model.manifest import PipelineRelease

Add = Callable[[tuple[str | int, ...], str], None]


def check_key_columns(rel: PipelineRelease, add: Add) -> None:
    tables = {t.name: t for t in rel.spec.tables}
    for i, job in enumerate(rel.spec.streaming_jobs):
        if job.keys is None:
            continue
        for sink in job.sinks:
            table = tables.get(sink.table)
            if table is None:  # an unknown sink table is reported by the reference check
                continue
            have = {c.name.lower() for c in (*table.columns, *table.partitioned_by)}
            for j, col in enumerate(job.keys.columns):
                if col.lower() not in have:
                    add(
                        ("spec", "streamingJobs", i, "keys", "columns", j),
                        f"key column {col!r} is not a column of sink table {sink.table} "
                        f"(columns: {', '.join(c.name for c in table.columns)})",
                    )
