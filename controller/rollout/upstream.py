"""Which version of a ``dependsOn`` release a stage serves, pure: what a downstream transform at
that stage reads (``plan.transforms_resolve`` resolves refs against the upstream manifest given).

The committed manifest is only what the upstream is heading for; a stage may not have it yet (not
reached, soaking blue/green beside blue with the serving view still on blue, rolled back). So the
version resolved is the one the stage's status says it serves.
"""

from __future__ import annotations

from controller.model.reasons import Phase


def served_version(phase: Phase | None, version: str | None, known_good: str | None) -> str | None:
    """The upstream version a stage serves: the stage's version once it Succeeded there; otherwise
    (deploying, verifying, rolled back, failed, not reached) the stage's known good, which is what
    stays served meanwhile; None when the stage has served nothing of it yet."""
    if phase is Phase.SUCCEEDED and version is not None:
        return version
    return known_good
