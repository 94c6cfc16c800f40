"""``pipectl get releases|release NAME|environments``: kubectl-style lists.

Releases come from the controller's API (``--server``, ``$PIPECTL_SERVER`` or the context) or the
state store (``--state``); Environments from the manifest repo (``--repo``, default: the context's).
``-o`` takes ``table``, ``wide``, ``json``, ``yaml``, ``name``, ``jsonpath=…`` and ``custom-columns=…``.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from controller.cli.options import BRANCH_OPT, REPO_OPT, SERVER_OPT, STATE_OPT, complete_release, fail
from controller.cli.output import ALL, Output, parse_output, render

API_VERSION = "pipectl.dev/v1alpha1"
RELEASE_KINDS = ("releases", "release", "pipelinereleases", "pipelinerelease", "pr")
ENV_KINDS = ("environments", "environment", "envs", "env")


# --- reading status: the API or the store ----------------------------------------------------------


def statuses(state: str, server: str | None) -> dict[str, dict[str, Any]]:
    from controller.cli.client import use_server

    url = use_server(server, state)
    if url:
        from controller.cli.client import api_get

        data = api_get(url, "/api/v1/releases")
        return {i["name"]: i["status"] for i in data["items"]}
    from controller.store.db import Store

    return dict(Store(state).list_statuses())


def history(state: str, server: str | None, name: str) -> list[dict[str, Any]]:
    from controller.cli.client import use_server

    url = use_server(server, state)
    if url:
        from controller.cli.client import api_get, release_path

        return list(api_get(url, release_path(name, "/history"))["history"])
    from controller.store.db import Store

    return list(Store(state).history(name))


def release_rows(statuses: dict[str, dict[str, Any]], state: str, server: str | None, wide: bool) -> str:
    from controller.cli.render import age, gates_summary, plain_table

    stages: list[str] = []
    for s in statuses.values():
        for st in s.get("stages", {}):
            if st not in stages:
                stages.append(st)
    headers = ["NAME", "VERSION", "STAGE", "PHASE", "READY", "GATES", "AGE"]
    if wide:
        headers += [st.upper() for st in stages] + ["COMMIT", "REASON", "MESSAGE"]
    rows = []
    for name, s in sorted(statuses.items()):
        cur = s.get("currentStage") or "-"
        stage_st = s.get("stages", {}).get(cur, {})
        hist = history(state, server, name)
        first = hist[-1]["started_at"] if hist else None
        ready: dict[str, Any] = next((c for c in s.get("conditions") or [] if c.get("type") == "Ready"), {})
        row = [name, s.get("version") or "-", cur, s.get("phase") or "-", ready.get("status", "Unknown")]
        row += [gates_summary(stage_st), age(first)]
        if wide:
            for st in stages:
                x = s.get("stages", {}).get(st)
                row.append(f"{x.get('version')}/{x.get('phase')}" if x else "-")
            message = " ".join(str(ready.get("message") or "-").split())
            row += [(s.get("observedCommit") or "-")[:12], ready.get("reason") or "-", message[:80]]
        rows.append(row)
    return plain_table(headers, rows)


def release_object(statuses: dict[str, dict[str, Any]], name: str | None) -> dict[str, Any]:
    if name:
        return {
            "apiVersion": API_VERSION,
            "kind": "PipelineRelease",
            "metadata": {"name": name},
            "status": statuses[name],
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineReleaseList",
        "items": [{"metadata": {"name": n}, "status": s} for n, s in sorted(statuses.items())],
    }


def _releases_text(name: str | None, out: Output, state: str, server: str | None) -> tuple[str, str]:
    """(what to print, what to compare between two --watch rounds)."""
    sts = statuses(state, server)
    if name:
        if name not in sts:
            fail(f'release "{name}" not found')
        sts = {name: sts[name]}
    text = render(
        release_object(sts, name),
        out,
        table=lambda: release_rows(sts, state, server, wide=out.kind == "wide"),
        names=lambda: [f"pipelinerelease/{n}" for n in sorted(sts)],
    )
    return text, text


def get(
    kind: str = typer.Argument(..., help="releases | release | environments"),
    name: str | None = typer.Argument(
        None, help="Release or Environment name.", autocompletion=complete_release
    ),
    output: str = typer.Option("", "--output", "-o", help="table | wide | json | yaml | name | "
                               "jsonpath=TEMPLATE | custom-columns=SPEC"),
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep printing changes (releases)."),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
    repo: str = REPO_OPT,
    branch: str = BRANCH_OPT,
) -> None:
    """List releases (NAME VERSION STAGE PHASE READY GATES AGE) or Environments, or show one."""
    from controller.cli.output import OutputError

    try:
        out = parse_output(output, ALL)
    except OutputError as e:
        fail(str(e), 2)
    if kind in ENV_KINDS:
        if watch:
            fail("--watch applies to releases only", 2)
        typer.echo(environments_text(repo, branch, state, name, out))
        return
    if kind not in RELEASE_KINDS:
        fail(f"unknown resource type {kind!r} (try: releases, environments)", 2)
    last = None
    while True:
        text, key = _releases_text(name, out, state, server)
        if not watch:
            typer.echo(text)
            return
        if key != last:
            if last is not None and not out.structured and out.kind != "name":
                text = "\n".join(text.splitlines()[1:])  # the header once
            typer.echo(text)
            last = key
        time.sleep(2)


# --- Environments ----------------------------------------------------------------------------------


def load_snapshot(repo: str, branch: str, state: str) -> Any:
    """The manifest repo at the head of ``branch`` (a plain directory: as it is on disk)."""
    from controller.engine.controller import state_dir_of
    from controller.model.errors import PipectlError
    from controller.source.git import GitSource
    from controller.source.validate import load_repo

    try:
        source = GitSource(repo, branch, cache_dir=state_dir_of(state) / "git")
        commit = source.resolve() if source.is_git else None
        snap = load_repo(source.checkout(commit).root)
    except PipectlError as e:
        fail(str(e))
    snap.commit = commit
    return snap


def _env_row(env: Any, wide: bool) -> list[str]:
    s = env.spec
    approvers = "-"
    if s.approvers is not None:
        approvers = ",".join([*s.approvers.users, *(f"group:{g}" for g in s.approvers.groups)])
    row = [env.name, str(s.promotion), s.canary_of or "-", approvers]
    row += [s.kafka.bootstrap_servers if s.kafka else "-", f"{s.hive.host}:{s.hive.port}" if s.hive else "-"]
    row += [s.airflow.url if s.airflow else "-"]
    if wide:
        row += [f"{s.presto.host}:{s.presto.port}" if s.presto else "-", s.spark.master if s.spark else "-"]
        row += [(s.kafka.topic_prefix or '""') if s.kafka else "-"]
        row += [(s.hive.database_prefix or '""') if s.hive else "-"]
    return row


def environments_text(repo: str, branch: str, state: str, name: str | None, out: Output) -> str:
    from controller.cli.render import plain_table

    snap = load_snapshot(repo, branch, state)
    names = sorted(n for n in snap.environments if n not in snap.invalid_environments)
    if name:
        if name not in names:
            fail(f'environment "{name}" not found in {repo}')
        names = [name]
    envs = [snap.environment(n) for n in names]
    docs = [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in envs]
    obj: Any = docs[0] if name else {"apiVersion": API_VERSION, "kind": "EnvironmentList", "items": docs}
    wide = out.kind == "wide"
    headers = ["NAME", "PROMOTION", "CANARY-OF", "APPROVERS", "KAFKA", "HIVE", "AIRFLOW"]
    if wide:
        headers += ["PRESTO", "SPARK", "TOPIC-PREFIX", "DB-PREFIX"]
    return render(
        obj,
        out,
        table=lambda: plain_table(headers, [_env_row(e, wide) for e in envs]),
        names=lambda: [f"environment/{n}" for n in names],
    )
