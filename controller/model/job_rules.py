"""Cross-field rules of a streaming job's spec that need more than one field to judge; each
returns the problem as a sentence, or None (``StreamingJobSpec`` raises it at the job's line)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def starting_points_problem(starts: set[str]) -> str | None:
    """The job reads its topics as one Kafka source (``--topic a,b``), which starts from one
    place: sources that ask for different ones would have all but the first ignored."""
    if len(starts) <= 1:
        return None
    return (
        "every source of a job starts from the same offsets (its topics are read as one Kafka "
        f"source); these ask for {', '.join(sorted(starts))}"
    )


def emits_final(args: Sequence[str]) -> bool:
    """The job's arguments ask for ``--emit final`` (``controller.jobkit.final_windows``)."""
    return "--emit=final" in args or any(a == "--emit" and b == "final" for a, b in itertools.pairwise(args))


def final_windows_problem(args: Sequence[str], own_table_per_version: bool) -> str | None:
    """``--emit final`` keeps a job's open windows in its own state: a version that takes over the
    old one's offsets (inPlace, a canary's key subsets) would never write the windows open at the
    switch."""
    if not emits_final(args) or own_table_per_version:
        return None
    return (
        "args --emit final needs strategy blueGreen (or canary without keys): the windows open "
        "in the old version's state would be lost when the new one starts from its offsets"
    )
