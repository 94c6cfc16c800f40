"""In-place streaming jobs across a rollback, pure: where a new version starts reading, and the
fresh checkpoint the known good restarts on from there.

An in-place job keeps one name and one checkpoint per stage, so the new version resumes from the
checkpoint the known good wrote. If the new version fails its gates, restarting the known good on
that same checkpoint would skip everything the failed version consumed. So the engine records, per
job and before the new version replaces the old one, where the new version starts
(``start_offsets``); a rollback restarts the known good from exactly there on a new checkpoint
directory (``fresh_checkpoint``), so the known good reprocesses what the failed version read.

The engine gathers the facts (the old job's last progress, Kafka's end offsets) and persists the
results; nothing here reads a clock or a backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from controller.plan.desired import vtag

PINNED = "@after-"
EARLIEST = -2
"""Spark's ``startingOffsets`` JSON for "the earliest offset still in the partition"."""


def start_offsets(
    committed: Mapping[str, Mapping[int, int]],
    ends: Mapping[str, Mapping[int, int]],
) -> dict[str, dict[str, int]]:
    """Per topic and partition: where the new version starts reading, as Spark's JSON offsets.

    ``committed`` is what the old job has processed (its last batch's end offsets: the position
    its checkpoint resumes from); ``ends`` is Kafka's end offsets at the switch. The committed
    position is recorded, not the end: the new version resumes from the old checkpoint, so it
    reads every event between the committed position and the end too. Restarting the known good
    from the end offsets would lose those events; from the committed position it loses none (at
    worst it reprocesses the batches the old job ran after this was recorded, before it stopped:
    duplicates, which the aggregate's overwrite absorbs, never a gap). A partition the old job
    has not processed yet starts at the earliest offset, for the same reason.
    """
    out: dict[str, dict[str, int]] = {}
    for topic, parts in ends.items():
        done = committed.get(topic, {})
        out[topic] = {str(p): int(min(done[p], end)) if p in done else EARLIEST for p, end in parts.items()}
    return out


def fresh_checkpoint(checkpoint: str, failed_version: str, offsets: str) -> str:
    """The known good's checkpoint after rolling ``failed_version`` back: a sibling of
    ``checkpoint`` (the one the failed version resumed from, itself perhaps an earlier move),
    named after the failed version and the recorded offsets. The same facts always give the same
    directory, so deciding it again (a restore resumed after a crash) never picks a third one."""
    base = checkpoint.rstrip("/").split(PINNED)[0]  # one level of moves, not one per rollback
    tag = hashlib.sha256(f"{failed_version}\n{offsets}".encode()).hexdigest()[:10]
    return f"{base}{PINNED}{vtag(failed_version)}-{tag}"
