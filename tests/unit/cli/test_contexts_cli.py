"""Contexts (`pipectl config …`): the file (0600, $PIPECTL_CONFIG, $XDG_CONFIG_HOME), the verbs, and
the precedence of a verb's --state/--repo/--server: flag > environment variable > context > default."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from controller.cli import client, config
from tests.unit.cli.clikit import invoke, status, store_with


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.yaml"
    monkeypatch.setenv("PIPECTL_CONFIG", str(path))
    for var in ("PIPECTL_STATE", "PIPECTL_SERVER", "PIPECTL_REPO", "PIPECTL_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_set_use_get_current_context(config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = invoke("config", "current-context")
    assert r.exit_code == 1 and "current-context is not set" in r.stderr
    monkeypatch.chdir(tmp_path)
    r = invoke("config", "set-context", "one", "--server", "http://127.0.0.1:8700/", "--repo", "repo",
               "--state", "sqlite:///.pipectl/state.db")
    assert r.exit_code == 0 and "created" in r.stdout and "current context" in r.stdout, r.output
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    data = yaml.safe_load(config_file.read_text())
    assert data["current-context"] == "one"
    assert data["contexts"] == [{
        "name": "one",
        "server": "http://127.0.0.1:8700",
        "repo": str(tmp_path / "repo"),  # made absolute: the context works from any directory
        "state": f"sqlite:///{tmp_path}/.pipectl/state.db",
    }]
    token = tmp_path / "tok"
    token.write_text("pct_secret\n")
    assert invoke("config", "set-context", "two", "--token-file", str(token)).exit_code == 0
    assert invoke("config", "current-context").stdout.strip() == "one"  # a second context is not current
    r = invoke("config", "use-context", "two")
    assert r.exit_code == 0 and invoke("config", "current-context").stdout.strip() == "two"
    r = invoke("config", "get-contexts")
    assert r.exit_code == 0 and "pct_secret" not in r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "SERVER", "REPO", "STATE", "AUTH"]
    assert lines[2].startswith("*") and "two" in lines[2] and f"token-file {token}" in lines[2]
    assert invoke("config", "get-contexts", "-o", "name").stdout.split() == ["one", "two"]
    assert client.context(with_token=True) == {"token": "pct_secret"}  # read from the file when used
    assert client.context() == {}  # and only then
    r = invoke("config", "use-context", "nope")
    assert r.exit_code == 1 and "no context named 'nope'" in r.stderr and "one, two" in r.stderr
    assert invoke("config", "delete-context", "two").exit_code == 0
    assert invoke("config", "current-context").exit_code == 1


def test_xdg_config_home_and_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "pipectl" / "config.yaml"
    assert invoke("config", "path").stdout.strip() == str(tmp_path / "xdg" / "pipectl" / "config.yaml")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_path() == tmp_path / "home" / ".config" / "pipectl" / "config.yaml"


def test_a_malformed_config_is_an_error_not_a_traceback(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("contexts: [{server: x}]\n")
    r = invoke("get", "releases")
    assert r.exit_code == 1 and "every context needs a name" in r.stderr
    assert invoke("config", "path").exit_code == 0  # `pipectl config` still works to repair it


def _names(r: object) -> list[str]:
    return [line.removeprefix("pipelinerelease/") for line in r.stdout.split()]  # type: ignore[attr-defined]


def test_state_precedence_flag_over_env_over_context(tmp_path: Path) -> None:
    flag = store_with(tmp_path / "flag.db", {"from-flag": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})
    env = store_with(tmp_path / "env.db", {"from-env": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})
    ctx = store_with(tmp_path / "ctx.db", {"from-context": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})
    assert _names(invoke("get", "releases", "-o", "name", "--state", ctx)) == ["from-context"]
    assert invoke("config", "set-context", "c", "--state", ctx).exit_code == 0
    assert _names(invoke("get", "releases", "-o", "name")) == ["from-context"]
    assert _names(invoke("get", "releases", "-o", "name", env={"PIPECTL_STATE": env})) == ["from-env"]
    r = invoke("get", "releases", "-o", "name", "--state", flag, env={"PIPECTL_STATE": env})
    assert _names(r) == ["from-flag"]
    # --context picks another context for one command
    assert invoke("config", "set-context", "other", "--state", flag).exit_code == 0
    assert _names(invoke("--context", "other", "get", "releases", "-o", "name")) == ["from-flag"]
    assert invoke("--context", "nope", "get", "releases").exit_code == 1


def test_repo_precedence_flag_over_env_over_context(repo: Path, tmp_path: Path) -> None:
    def with_env(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(repo, root)
        dev = (root / "environments" / "dev.yaml").read_text()
        (root / "environments" / f"{name}.yaml").write_text(dev.replace("name: dev", f"name: {name}"))
        return root

    flag, env, ctx = with_env("flagenv"), with_env("envenv"), with_env("ctxenv")
    state = f"sqlite:///{tmp_path}/s.db"
    assert invoke("config", "set-context", "c", "--repo", str(ctx), "--state", state).exit_code == 0

    def envs(*args: str, **kw: str) -> set[str]:
        r = invoke("get", "environments", "-o", "name", *args, env=kw)
        assert r.exit_code == 0, r.output
        return {line.removeprefix("environment/") for line in r.stdout.split()}

    assert "ctxenv" in envs()
    assert "envenv" in envs(PIPECTL_REPO=str(env))
    assert "flagenv" in envs("--repo", str(flag), PIPECTL_REPO=str(env))


def test_server_precedence_and_the_stopped_controller(tmp_path: Path) -> None:
    ctx = store_with(tmp_path / "ctx.db", {"alpha": status("1.0.0", {"dev": ("1.0.0", "Succeeded")})})
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    assert invoke("config", "set-context", "c", "--state", ctx, "--server", dead).exit_code == 0
    # the context's server does not answer, its store is here: read the store, and say so
    r = invoke("get", "releases", "-o", "name")
    assert r.exit_code == 0 and _names(r) == ["alpha"]
    assert f"no controller answers at {dead}" in r.stderr
    # an explicit --state beats the context's server, silently
    r = invoke("get", "releases", "-o", "name", "--state", ctx)
    assert r.exit_code == 0 and _names(r) == ["alpha"] and r.stderr == ""
    # an explicit server is asked, and its failure is the answer
    r = invoke("get", "releases", env={"PIPECTL_SERVER": dead, "PIPECTL_TOKEN": "pct_x"})
    assert r.exit_code == 1 and "cannot reach the controller" in r.stderr


def test_controller_run_records_its_context_without_taking_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 config_file: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()
    # tests' and benchmarks' controllers run on temporary repos and stores: nobody's context
    assert config.record_controller_context("repo", "sqlite:///.pipectl/state.db", "0.0.0.0", 8711) is None
    assert not config_file.exists()
    monkeypatch.setattr(config, "_temporary", lambda path: False)  # as if tmp_path were a home
    name = config.record_controller_context("repo", "sqlite:///.pipectl/state.db", "0.0.0.0", 8711)
    assert name == "local-8711"
    cfg = config.Config.load()
    assert cfg.current == "local-8711"  # none was current
    ctx = cfg.contexts["local-8711"]
    assert (ctx.server, ctx.repo, ctx.state) == (
        "http://127.0.0.1:8711", str(tmp_path / "repo"), f"sqlite:///{tmp_path}/.pipectl/state.db"
    )
    # the same controller again: nothing new; another one: recorded, not made current
    assert config.record_controller_context("repo", "sqlite:///.pipectl/state.db", "127.0.0.1", 8711) is None
    assert invoke("config", "set-context", "mine", "--state", "sqlite:////x.db", "--current").exit_code == 0
    assert config.record_controller_context("repo", "sqlite:///other.db", "127.0.0.1", 8712) == "local-8712"
    assert config.Config.load().current == "mine"
    # a context the user made under that name is left alone
    assert invoke("config", "set-context", "local-8713", "--repo", "x").exit_code == 0
    assert config.record_controller_context("repo", "sqlite:///o.db", "127.0.0.1", 8713) is None
    assert config.Config.load().contexts["local-8713"].state is None
    assert stat.S_IMODE(os.stat(config_file).st_mode) == 0o600


def test_contexts_never_reach_controller_run(tmp_path: Path) -> None:
    """`controller run` takes its --repo and --state from its flags only (it is the server side)."""
    import typer

    from controller.cli.main import app

    assert invoke("config", "set-context", "c", "--repo", str(tmp_path), "--state", "sqlite:////c.db").exit_code == 0
    cmd = typer.main.get_command(app)
    current = config.active()
    assert current is not None
    defaults = config.default_map(cmd, current)
    assert "controller" not in defaults and "config" not in defaults
    assert defaults["get"] == {"state": "sqlite:////c.db", "repo": str(tmp_path)}
    assert defaults["plan"]["repo"] == str(tmp_path) and defaults["transform"]["run"]["repo"] == str(tmp_path)
