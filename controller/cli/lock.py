"""The controller's leader lock for a one-shot verb that changes a stage in this process
(``pipectl apply``, ``backfill``, ``replay``): the verb runs only while no controller (and no other
such verb) holds it, so it never interleaves with a controller's pass over the same release;
refused with a clear message otherwise. The lock is the controller's elector
(``controller.engine.leader.elector_from_env``): a file lock, or on a PostgreSQL state store the
advisory lock, so a verb on one host is refused while a controller on another host leads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


@contextmanager
def leader_lock(state: str, verb: str, hint: str) -> Iterator[None]:
    """Hold the leader lock of the state store ``state`` for the duration, or exit 1 saying who
    holds it and ``hint`` (what to do instead)."""
    from controller.engine.controller import state_dir_of
    from controller.engine.leader import FileLockElector, default_identity, elector_from_env
    from controller.engine.leader_pg import PgAdvisoryElector

    try:
        elector = elector_from_env(state_dir_of(state), state)
    except ValueError as e:
        typer.echo(f"error: pipectl {verb}: {e}", err=True)
        raise typer.Exit(1) from None
    if isinstance(elector, FileLockElector | PgAdvisoryElector):
        elector.identity = f"pipectl-{verb}-{default_identity()}"
    if not elector.acquire():
        holder = elector.holder() if isinstance(elector, FileLockElector | PgAdvisoryElector) else None
        who = f" ({holder})" if holder else ""
        typer.echo(f"error: pipectl {verb}: the leader lock is held{who}: {hint}", err=True)
        raise typer.Exit(1)
    try:
        yield
    finally:
        elector.release()
