"""Registers the verbs that live in their own modules on the ``pipectl`` app (``main.py``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from controller.cli.contexts import app as config_app
    from controller.cli.events import events
    from controller.cli.explain import explain
    from controller.cli.info import version
    from controller.cli.logs import logs
    from controller.cli.suspend import resume, suspend
    from controller.cli.wait import wait

    app.add_typer(config_app, name="config")
    app.command("version")(version)
    app.command("wait")(wait)
    app.command("events")(events)
    app.command("logs")(logs)
    app.command("suspend")(suspend)
    app.command("resume")(resume)
    app.command("explain")(explain)
