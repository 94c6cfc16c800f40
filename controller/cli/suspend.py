"""``pipectl suspend RELEASE`` / ``pipectl resume RELEASE``: stop and restart the controller's
passes over one release (``controller.store.suspend``). While suspended nothing is planned,
applied, gated, promoted or rolled back for it, and its Ready condition is False with reason
``Suspended``; what already runs keeps running.

Through the API (``--server`` or the context) the caller's token's principal is recorded and the
controller is woken at once; with ``--state`` (an operator on the controller host) the flag is
written to the store as ``local:<os user>`` and the controller sees it at its next pass.
"""

from __future__ import annotations

import getpass

import typer

from controller.cli.options import RELEASE_ARG, SERVER_OPT, STATE_OPT, fail


def _set(release: str, suspended: bool, reason: str, state: str, server: str | None) -> None:
    from controller.cli.client import use_server

    url = use_server(server, state)
    verb = "suspended" if suspended else "resumed"
    if url:
        from controller.cli.client import api_post, release_path

        body = {"reason": reason} if suspended else {}
        out = api_post(url, release_path(release, "/suspend" if suspended else "/resume"), body)
        changed = bool(out.get("changed"))
    else:
        from controller.store.db import Store
        from controller.store.suspend import set_suspended

        store = Store(state)
        if store.get_status(release) is None:
            fail(f'release "{release}" not found in the state store')
        who = f"local:{getpass.getuser()}"
        changed = set_suspended(store, release, suspended, who, reason)
        if changed:
            store.add_event(release, None, "Normal", "Suspended" if suspended else "Resumed",
                            f"{verb} by {who}" + (f": {reason}" if reason else ""))
    typer.echo(f"pipelinerelease/{release} {verb}" + ("" if changed else f" (it was {verb} already)"))


def suspend(
    release: str = RELEASE_ARG,
    reason: str = typer.Option("", "--reason", help="Why (shown in the Ready condition's message)."),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Suspend a release: the controller skips it (Ready=False, reason Suspended) until resumed."""
    _set(release, True, reason, state, server)


def resume(
    release: str = RELEASE_ARG,
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Resume a suspended release: the controller reconciles it again from its next pass."""
    _set(release, False, "", state, server)
