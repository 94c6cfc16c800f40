"""Replay planning, pure: names, offsets and job arguments of a replay of a streaming job.

A replay runs a release's streaming job version from the Kafka offsets of a timestamp into its
*own* checkpoint and output table, beside the running job (repairs, blue/green warm-up). All names
follow from the job, the version and the time range, so the same replay asked twice is the same
job on the same checkpoint (idempotent: the sink's commit markers skip what it already wrote):

* tag: ``replay_<from>`` or ``replay_<from>_<to>``, times as ``YYYYmmddtHHMMSS`` (UTC);
* output table: ``<physical table of the version>__<tag>`` (created with the release's columns);
* checkpoint: ``<the job's checkpoint for the version>/<tag>``;
* job (and query) name: ``<the job's name>-<tag with dashes>``.

The job's arguments are the release's, with ``--table``, ``--checkpoint``, ``--query-name`` and
``--starting-offsets`` (the JSON offsets of ``from``) replaced; a bounded replay adds
``--available-now`` and, with an end time, ``--ending-offsets`` (the JSON offsets of ``to``:
per partition, the first offset at or after ``to``, exclusive) — which the job must support.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from controller.plan.resources import StreamingJobResource, TableResource

ENDING_OFFSETS = "--ending-offsets"
AVAILABLE_NOW = "--available-now"
_REPLACED = ("--table", "--checkpoint", "--query-name", "--starting-offsets")
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,127}")

Offsets = Mapping[str, Mapping[int, int]]
"""topic -> partition -> offset."""


class ReplayError(ValueError):
    """A replay cannot be planned as asked."""


def parse_time(text: str) -> int:
    """Epoch milliseconds from ``1772409510000`` or an ISO-8601 time (no zone means UTC)."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        stamp = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as e:
        raise ReplayError(f"invalid time {text!r}: use ISO-8601 (2026-03-01T23:58:30Z) or epoch ms") from e
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dt%H%M%S")


def replay_tag(from_ms: int, to_ms: int | None = None) -> str:
    if to_ms is not None and to_ms <= from_ms:
        raise ReplayError("--to-time must be after --from-time")
    tag = f"replay_{_stamp(from_ms)}"
    return tag if to_ms is None else f"{tag}_{_stamp(to_ms)}"


def replay_table(physical: str, tag: str) -> str:
    db, table = physical.split(".", 1)
    name = f"{table}__{tag}"
    if not _IDENT.fullmatch(name):
        raise ReplayError(f"replay table name {name!r} is not a valid Hive identifier (too long?)")
    return f"{db}.{name}"


def replay_job_name(job: str, tag: str) -> str:
    return f"{job}-{tag.replace('_', '-')}"


def replay_checkpoint(checkpoint: str, tag: str) -> str:
    return f"{checkpoint.rstrip('/')}/{tag}"


def offsets_json(offsets: Offsets) -> str:
    """Spark's JSON offsets (``{"topic": {"0": 12}}``), sorted, every partition of every topic."""
    return json.dumps(
        {t: {str(p): int(o) for p, o in sorted(parts.items())} for t, parts in sorted(offsets.items())},
        separators=(",", ":"),
    )


def count_between(start: Offsets, end: Offsets) -> int:
    """Records between two offset maps (``end`` exclusive); partitions missing in ``end`` count 0."""
    return sum(
        max(0, int(end.get(t, {}).get(p, o)) - int(o)) for t, parts in start.items() for p, o in parts.items()
    )


JOB_FRAME = "controller.jobkit.kafka_job"
"""The job frame both example jobs are written on; its ``base_parser`` declares ``FRAME_OPTIONS``
(``tests/unit/jobkit/test_kafka_job.py`` checks the two lists agree)."""
FRAME_OPTIONS = frozenset(
    {"--available-now", ENDING_OFFSETS, "--starting-offsets", "--checkpoint", "--table"}
)


def supports_option(source: bytes, option: str) -> bool:
    """Whether a job's source declares ``option`` (an argparse ``add_argument("--x", …)``), itself
    or through the job frame's ``base_parser``."""
    text = source.decode("utf-8", "replace")
    if option in FRAME_OPTIONS and JOB_FRAME in text and "base_parser(" in text:
        return True
    return f'"{option}"' in text or f"'{option}'" in text


def replay_args(
    args: Sequence[str],
    *,
    table: str,
    checkpoint: str,
    query_name: str,
    starting_offsets: str,
    available_now: bool,
    ending_offsets: str | None = None,
) -> list[str]:
    """The job's args with the replay's table, checkpoint, query name and offsets."""
    values = {
        "--table": table, "--checkpoint": checkpoint, "--query-name": query_name,
        "--starting-offsets": starting_offsets,
    }
    out: list[str] = []
    seen: set[str] = set()
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in _REPLACED and i + 1 < len(args):
            out += [a, values[a]]
            seen.add(a)
            skip = True
        elif a == ENDING_OFFSETS and i + 1 < len(args):
            skip = True  # replaced below (or dropped: an unbounded replay has no end)
        elif a == AVAILABLE_NOW:
            continue  # added below when bounded
        else:
            out.append(a)
    missing = [k for k in _REPLACED if k not in seen]
    if missing:
        raise ReplayError(f"the job's args lack {', '.join(missing)}: cannot point it at a replay")
    if available_now or ending_offsets is not None:
        out.append(AVAILABLE_NOW)
    if ending_offsets is not None:
        out += [ENDING_OFFSETS, ending_offsets]
    return out


def replay_job(
    job: StreamingJobResource,
    tables: Sequence[TableResource],
    *,
    tag: str,
    starting: Offsets,
    ending: Offsets | None,
    available_now: bool,
) -> tuple[StreamingJobResource, list[TableResource]]:
    """The replay's job and output tables, derived from the release's desired job and tables."""
    sinks = _arg(job.args, "--table").split(",")
    by_name = {t.name: t for t in tables}
    missing = [s for s in sinks if s not in by_name]
    if missing:
        raise ReplayError(f"job {job.name} writes {', '.join(missing)}, which the release does not declare")
    out_tables = [
        by_name[s].model_copy(
            update={
                "name": replay_table(s, tag),
                "properties": {**by_name[s].properties, "pipectl.replay.of": s, "pipectl.replay.tag": tag},
                "location": None,
                "migrations": [],
            }
        )
        for s in sinks
    ]
    name = replay_job_name(job.name, tag)
    checkpoint = replay_checkpoint(job.checkpoint, tag)
    args = replay_args(
        job.args,
        table=",".join(t.name for t in out_tables),
        checkpoint=checkpoint,
        query_name=name,
        starting_offsets=offsets_json(starting),
        available_now=available_now,
        ending_offsets=offsets_json(ending) if ending is not None else None,
    )
    update = {"name": name, "args": args, "checkpoint": checkpoint, "running": True}
    return job.model_copy(update=update), out_tables


def _arg(args: Sequence[str], key: str) -> str:
    for i, a in enumerate(args[:-1]):
        if a == key:
            return args[i + 1]
    raise ReplayError(f"the job's args lack {key}")
