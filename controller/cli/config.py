"""pipectl's client configuration: named contexts, as kubectl's kubeconfig has them (flattened).

The file is ``$PIPECTL_CONFIG``, else ``$XDG_CONFIG_HOME/pipectl/config.yaml``, else
``~/.config/pipectl/config.yaml``; it is written with mode 0600 (a context may hold a token)::

    apiVersion: pipectl.dev/v1alpha1
    kind: Config
    current-context: demo
    contexts:
      - name: demo
        server: http://127.0.0.1:8700          # the controller's API
        repo: /home/me/pipectl/demo-work/repo  # the manifest repo the controller follows
        state: sqlite:////home/me/pipectl/.pipectl/state.db
        token: pct_…                           # or token-file: /path/to/token (read when used;
                                               #   empty or unreadable: an error, nothing sent)

Every verb's ``--repo``, ``--state`` and ``--server`` default from the current context (or the one
named by ``pipectl --context NAME``); a flag or an environment variable (``PIPECTL_REPO``,
``PIPECTL_STATE``, ``PIPECTL_SERVER``) wins over it. The API token is ``$PIPECTL_TOKEN``, else the
context's ``token``, else the contents of its ``token-file``. ``make demo`` writes the context
``demo`` and makes it current; ``pipectl controller run`` records ``local-<port>`` and makes it
current only when there is no current context.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import typer
import yaml

API_VERSION = "pipectl.dev/v1alpha1"
KEYS = ("server", "repo", "state", "token", "token-file", "written-by")
DEFAULTED = ("repo", "state", "server")  # the options a context gives defaults to
# Commands whose options never come from a context: the controller is the server side (it records
# its own context), ``config`` edits the file itself.
NOT_DEFAULTED = {("controller",), ("config",)}
BY_CONTROLLER = "pipectl controller run"


class ConfigError(Exception):
    """The config file cannot be read or names no such context."""


def config_path() -> Path:
    env = os.environ.get("PIPECTL_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pipectl" / "config.yaml"


@dataclass
class Context:
    name: str
    server: str | None = None
    repo: str | None = None
    state: str | None = None
    token: str | None = None
    token_file: str | None = None
    written_by: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"name": self.name}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value:
                out[f.name.replace("_", "-")] = value
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: Path) -> Context:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise ConfigError(f"{where}: every context needs a name")
        unknown = set(raw) - {"name", *KEYS}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ConfigError(f"{where}: context {raw['name']!r}: unknown field(s) {names}")
        values = {k.replace("-", "_"): str(v) for k, v in raw.items() if k != "name" and v not in (None, "")}
        return cls(name=raw["name"], **values)

    def api_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            try:
                token = Path(self.token_file).expanduser().read_text().strip()
            except OSError as e:
                why = f"token-file {self.token_file}: {e.strerror}"
                raise ConfigError(f"context {self.name!r}: {why}") from None
            if not token:  # refused, never a request without a credential
                raise ConfigError(f"context {self.name!r}: token-file {self.token_file} is empty")
            return token
        return None


@dataclass
class Config:
    path: Path
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        path = path or config_path()
        if not path.exists():
            return cls(path)
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            typer.echo(f"warning: {path} is readable by others; chmod 600 it", err=True)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping (apiVersion, kind: Config, contexts)")
        contexts = raw.get("contexts") or []
        if not isinstance(contexts, list):
            raise ConfigError(f"{path}: contexts must be a list")
        out = cls(path, raw.get("current-context") or None)
        for c in contexts:
            ctx = Context.from_dict(c, path)
            out.contexts[ctx.name] = ctx
        return out

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {
            "apiVersion": API_VERSION,
            "kind": "Config",
            "current-context": self.current or "",
            "contexts": [c.as_dict() for c in self.contexts.values()],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def context(self, name: str) -> Context:
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise ConfigError(f"no context named {name!r} in {self.path} (contexts: {known})")
        return self.contexts[name]


# --- the context in use ----------------------------------------------------------------------------

_selected: str | None = None


def select(name: str | None) -> None:
    """``pipectl --context NAME``: use this context instead of the current one."""
    global _selected
    _selected = name


def active() -> Context | None:
    """The context in use (``--context``, else the current one), or None."""
    cfg = Config.load()
    name = _selected or cfg.current
    if not name:
        return None
    if _selected is None and name not in cfg.contexts:
        typer.echo(f"warning: current-context {name!r} is not in {cfg.path}", err=True)
        return None
    return cfg.context(name)


def default_map(command: Any, ctx: Context) -> dict[str, Any]:
    """click's ``default_map`` giving every (sub)command's --repo/--state/--server the context's
    values; click ranks it below the command line and environment variables, above defaults."""
    values = {k: getattr(ctx, k) for k in DEFAULTED if getattr(ctx, k)}

    def walk(cmd: Any, path: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(getattr(cmd, "commands", None), dict):  # a group
            for name, sub in cmd.commands.items():
                if (*path, name) not in NOT_DEFAULTED and (m := walk(sub, (*path, name))):
                    out[name] = m
        else:
            out = {p.name: values[p.name] for p in cmd.params if p.name in values}
        return out

    return walk(command, ()) if values else {}


def _source(param: str) -> str | None:
    """Where the running command's ``param`` came from: COMMANDLINE, ENVIRONMENT, DEFAULT_MAP, …"""
    import importlib

    try:  # typer >= 0.2x carries its own click
        clk: Any = importlib.import_module("typer._click.globals")
    except ImportError:
        clk = importlib.import_module("click")
    ctx: Any = clk.get_current_context(silent=True)
    src = ctx.get_parameter_source(param) if ctx is not None else None
    return str(src.name) if src is not None else None


def from_context(param: str) -> bool:
    """Did the running command's ``param`` come from the context (not a flag, env var or default)?"""
    return _source(param) == "DEFAULT_MAP"


def explicit(param: str) -> bool:
    """Was the running command's ``param`` given as a flag or an environment variable?"""
    return _source(param) in ("COMMANDLINE", "ENVIRONMENT")


# --- contexts written by pipectl itself ------------------------------------------------------------


def absolute_repo(repo: str) -> str:
    """A local repo as an absolute path (a context works from any directory); URLs unchanged."""
    if "://" in repo or (repo.startswith("git@") and ":" in repo):
        return repo
    return str(Path(repo).expanduser().resolve())


def absolute_state(state: str) -> str:
    """``sqlite:///relative.db`` → ``sqlite:////abs/relative.db``; other URLs unchanged."""
    prefix = "sqlite:///"
    if state.startswith(prefix) and not state.startswith(prefix + "/") and ":memory:" not in state:
        return prefix + str(Path(state.removeprefix(prefix)).resolve())
    return state


def server_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - a wildcard listener is reached on loopback
        host = "127.0.0.1" if host != "::" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def record_controller_context(repo: str, state: str, host: str, port: int) -> str | None:
    """``pipectl controller run``: remember its repo, state and API as ``local-<port>`` unless a
    context already points at the same three, or its repo or state is under the temporary
    directory (tests, benchmarks); make it current only when none is. Returns the name written, or
    None (nothing to write, or a context of that name the user made is kept)."""
    if _temporary(repo) or _temporary(state.removeprefix("sqlite:///")):
        return None  # a test's or a benchmark's controller: gone soon, nobody's context
    cfg = Config.load()
    new = Context(
        name=f"local-{port}",
        server=server_url(host, port),
        repo=absolute_repo(repo),
        state=absolute_state(state),
        written_by=BY_CONTROLLER,
    )
    same = (new.server, new.repo, new.state)
    if any((c.server, c.repo, c.state) == same for c in cfg.contexts.values()):
        return None
    old = cfg.contexts.get(new.name)
    if old is not None and old.written_by != BY_CONTROLLER:
        return None
    if old is not None:
        new.token, new.token_file = old.token, old.token_file
    cfg.contexts[new.name] = new
    if not cfg.current or cfg.current not in cfg.contexts:
        cfg.current = new.name
    cfg.save()
    return new.name


def _temporary(path: str) -> bool:
    """Is ``path`` (a local path, not a URL) under the system's temporary directory?"""
    import tempfile

    if "://" in path:
        return False
    tmp = Path(tempfile.gettempdir()).resolve()
    return Path(path).expanduser().resolve().is_relative_to(tmp)


def upsert(ctx: Context, *, make_current: bool) -> Config:
    cfg = Config.load()
    cfg.contexts[ctx.name] = ctx
    if make_current:
        cfg.current = ctx.name
    cfg.save()
    return cfg
