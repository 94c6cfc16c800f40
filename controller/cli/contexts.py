"""``pipectl config``: the contexts of the client config file (``controller.cli.config``).

    pipectl config set-context prod --server https://pipectl.example:8700 --repo git@… \
        --token-file ~/.pipectl-token
    pipectl config use-context prod
    pipectl config get-contexts
    pipectl config current-context
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from controller.cli.config import Config, ConfigError, Context, absolute_repo, absolute_state, config_path
from controller.cli.output import output_option

app = typer.Typer(help="Contexts: which controller, repo and state store verbs use.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load() -> Config:
    try:
        return Config.load()
    except ConfigError as e:
        _fail(str(e))


@app.command("set-context")
def set_context(
    name: str = typer.Argument(..., help="Context name."),
    server: str | None = typer.Option(None, "--server", help="Controller API, e.g. http://127.0.0.1:8700."),
    repo: str | None = typer.Option(
        None, "--repo", help="Manifest repo: a local dir (made absolute) or git URL."
    ),
    state: str | None = typer.Option(
        None, "--state", help="State store URL (a relative sqlite path is made absolute)."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File holding your API token (read when used; keep it 0600)."
    ),
    current: bool = typer.Option(False, "--current", help="Also make it the current context."),
) -> None:
    """Create or change a context: only the fields given change (kubectl config set-context)."""
    cfg = _load()
    existed = name in cfg.contexts
    ctx = cfg.contexts.get(name) or Context(name=name)
    if server is not None:
        ctx.server = server.rstrip("/") or None
    if repo is not None:
        ctx.repo = absolute_repo(repo) if repo else None
    if state is not None:
        ctx.state = absolute_state(state) if state else None
    if token_file is not None:
        path = token_file.expanduser().resolve()
        if not path.is_file():
            _fail(f"--token-file {token_file}: no such file")
        if not path.read_text(errors="replace").strip():
            _fail(f"--token-file {token_file}: the file is empty (`pipectl token create` prints a token)")
        ctx.token_file, ctx.token = str(path), None
    ctx.written_by = None  # the user's own now: pipectl controller run leaves it alone
    cfg.contexts[name] = ctx
    if current or not cfg.current:
        cfg.current = name
    cfg.save()
    verb = "modified" if existed else "created"
    typer.echo(f'Context "{name}" {verb}.' + (" It is the current context." if cfg.current == name else ""))


@app.command("use-context")
def use_context(name: str = typer.Argument(..., help="Context name.")) -> None:
    """Make NAME the current context."""
    cfg = _load()
    try:
        cfg.context(name)
    except ConfigError as e:
        _fail(str(e))
    cfg.current = name
    cfg.save()
    typer.echo(f'Switched to context "{name}".')


@app.command("current-context")
def current_context() -> None:
    """Print the current context's name (exit 1 when none is set)."""
    cfg = _load()
    if not cfg.current:
        _fail(f"current-context is not set in {cfg.path}")
    typer.echo(cfg.current)


@app.command("get-contexts")
def get_contexts(
    output: str = output_option("table", "name", "json", "yaml"),
) -> None:
    """List the contexts; the current one is marked with *. Tokens are never shown."""
    from controller.cli.output import parse_output, render
    from controller.cli.render import plain_table

    cfg = _load()
    out = parse_output(output)
    rows, items = [], []
    for c in cfg.contexts.values():
        auth = "token" if c.token else (f"token-file {c.token_file}" if c.token_file else "-")
        rows.append(["*" if c.name == cfg.current else "", c.name, c.server or "-", c.repo or "-",
                     c.state or "-", auth])
        item = c.as_dict()
        if "token" in item:
            item["token"] = "(set)"  # noqa: S105 - never the token itself
        items.append(item)
    obj = {"current-context": cfg.current or "", "contexts": items}
    typer.echo(render(obj, out, table=lambda: plain_table(["CURRENT", "NAME", "SERVER", "REPO", "STATE",
                                                           "AUTH"], rows),
                      names=lambda: [c.name for c in cfg.contexts.values()]))


@app.command("delete-context")
def delete_context(name: str = typer.Argument(..., help="Context name.")) -> None:
    """Remove a context (and unset current-context if it was the current one)."""
    cfg = _load()
    if name not in cfg.contexts:
        _fail(f"no context named {name!r} in {cfg.path}")
    del cfg.contexts[name]
    if cfg.current == name:
        cfg.current = None
    cfg.save()
    typer.echo(f'Deleted context "{name}" from {cfg.path}.')


@app.command("path")
def path() -> None:
    """Print the config file's path ($PIPECTL_CONFIG, else $XDG_CONFIG_HOME/pipectl/config.yaml)."""
    typer.echo(str(config_path()))
