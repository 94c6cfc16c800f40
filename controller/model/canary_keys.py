"""Key-subset canary serving of a streaming job (``strategy: canary`` with ``keys``).

``keys.columns`` name the key columns of the job's sink tables; ``keys.steps`` the percentages of
the keys the serving view takes from the new version, step after step, until 100: exactly
``round(p * n / 100)`` of the stable table's n keys, listed, for up to 1,000 keys of one column, else
a share of the hash buckets 0..99 of those columns (``controller.plan.keysplit``). Checked here:
steps strictly increasing, each in 1..100, the last 100; columns valid identifiers, no duplicates;
``pause`` a duration (each step is held at least that long once the view serves its rows, as an
Argo Rollouts ``pause: {duration}`` after each ``setWeight``).
That the columns are columns of the sink tables is checked with the repo
(``controller.source.validate_keys``).
"""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator

from controller.model import identifiers as ids
from controller.model.base import Spec, parse_duration


class CanaryKeys(Spec):
    """Which keys the serving view takes from the new version, step by step."""

    columns: list[str] = Field(
        min_length=1,
        description="Key columns of the job's sink tables. One column with up to 1,000 distinct keys: "
        "each step lists its exact share of them; otherwise keys are hashed into buckets 0..99.",
    )
    steps: list[int] = Field(
        min_length=1,
        description="Percent of the keys served by the new version at each step, strictly "
        "increasing, each in 1..100, ending at 100 (e.g. [10, 50, 100]).",
    )
    pause: str = Field(
        default="0s",
        description="Least time each step is held once the serving view serves its rows, gates "
        "running meanwhile, before it may move on (e.g. 10m). 0s: the next pass whose gates pass.",
    )

    @property
    def pause_seconds(self) -> float:
        return parse_duration(self.pause)

    @field_validator("pause")
    @classmethod
    def _pause(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ids.check_hive_ident(c, "column")
            except ids.IdentifierError as e:
                raise ValueError(str(e)) from None
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"key column(s) named twice: {', '.join(dupes)}")
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if not 1 <= s <= 100]
        if bad:
            raise ValueError(f"each step is a percent in 1..100; got {bad[0]}")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"steps must be strictly increasing; got {v}")
        if v[-1] != 100:
            raise ValueError(f"the last step must be 100 (the new version serves every key); got {v[-1]}")
        return v
