"""``pipectl logs JOB --stage S``: a streaming job's driver log, from the Spark runner's registry
(``<state dir>/spark/jobs/<job>.json`` names its ``driver.log``; ``controller.adapters.spark_runner``).

JOB is the job's name in the release (``spec.streamingJobs[].name``, e.g. ``host-metrics-agg``) or
its physical name (``dev-host-metrics-host-metrics-agg-v1-0-0``, as ``pipectl describe`` and the
registry show it). Of the stage's jobs by that name, the one running the stage's current version
is shown, else a running one, else the newest. A canary stage's jobs run in its target's namespace
(``prod-…-canary`` or the canary version's ``prod-…-vX-Y-Z``); they are found by that version.
The registry is on the controller's host: run this there (``--state`` names the state directory).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from controller.cli.options import STATE_OPT, fail


def _records(state: str) -> list[Any]:
    from pydantic import ValidationError

    from controller.adapters.spark_records import JobRecord
    from controller.engine.controller import state_dir_of

    jobs = state_dir_of(state) / "spark" / "jobs"
    out = []
    for path in sorted(jobs.glob("*.json")) if jobs.is_dir() else []:
        try:
            out.append(JobRecord.model_validate_json(path.read_text()))
        except (OSError, ValidationError) as e:
            typer.echo(f"warning: {path}: unreadable registry entry ({type(e).__name__})", err=True)
    return out


def alive(rec: Any) -> bool:
    """The recorded process still runs (same pid and start time, as the runner checks)."""
    if rec.pid is None or rec.stopped_at is not None:
        return False
    try:
        fields = Path(f"/proc/{rec.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return rec.start_ticks is None or int(fields[19]) == rec.start_ticks


def _versions(state: str) -> dict[str, dict[str, str]]:
    """release → stage → the version the state store shows there (empty without a local store)."""
    from controller.store.db import Store

    prefix = "sqlite:///"
    if state.startswith(prefix) and not Path(state.removeprefix(prefix)).exists():
        return {}
    return {
        name: {stage: str(s["version"]) for stage, s in (st.get("stages") or {}).items() if s.get("version")}
        for name, st in Store(state).list_statuses().items()
    }


def _canary_job(r: Any, rel: str, job: str, stage: str, versions: dict[str, str]) -> bool:
    """Is ``r`` the canary stage's job: ``<target>-<rel>-<job>-canary``, or the canary's version
    in a namespace whose own stage runs another version?"""
    if f"-{rel}-{job}-" not in r.name or stage not in versions:
        return False
    if r.name.endswith(f"-{rel}-{job}-canary"):
        return True
    namespace = r.name.split(f"-{rel}-{job}-", 1)[0]
    return r.version == versions[stage] and versions.get(namespace) not in (None, r.version)


def pick(
    records: list[Any], job: str, stage: str, release: str | None, versions: dict[str, dict[str, str]]
) -> list[Any]:
    """The stage's records of ``job``, best first (``versions``: release → stage → version)."""
    exact = [r for r in records if r.name == job]
    if exact:
        return exact
    mine = []
    for r in records:
        rel = r.owner.release if r.owner else None
        if rel is None or (release and rel != release):
            continue
        base = f"{stage}-{rel}-{job}"
        if r.name == base or r.name.startswith(base + "-"):
            mine.append(r)
        elif _canary_job(r, rel, job, stage, versions.get(rel, {})):
            mine.append(r)  # in its target's namespace
    if any(r.name.startswith(f"{stage}-") for r in mine):
        mine = [r for r in mine if r.name.startswith(f"{stage}-")]

    def rank(r: Any) -> tuple[bool, bool, str]:
        current = r.owner is not None and versions.get(r.owner.release, {}).get(stage) == r.version
        return (current, alive(r), r.started_at.isoformat())

    return sorted(mine, key=rank, reverse=True)


def _tail(path: Path, lines: int) -> tuple[str, int]:
    try:
        data = path.read_bytes()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    text = data.decode(errors="replace")
    if lines == 0:
        text = ""
    elif lines > 0:
        kept = text.splitlines()[-lines:]
        text = "\n".join(kept) + ("\n" if kept else "")
    return text, len(data)


def logs(
    job: str = typer.Argument(..., help="Job name in the release, or its physical name."),
    stage: str = typer.Option(..., "--stage", "-s", help="Stage (an Environment name)."),
    release: str | None = typer.Option(None, "--release", help="Only this release's jobs."),
    tail: int = typer.Option(-1, "--tail", help="Last N lines (default: all)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing what the job writes."),
    state: str = STATE_OPT,
) -> None:
    """Print a streaming job's driver log (from the Spark runner's registry on this host)."""
    records = _records(state)
    found = pick(records, job, stage, release, _versions(state))
    if not found:
        known = ", ".join(r.name for r in records) or "none"
        fail(f"no streaming job {job!r} at stage {stage} in the registry of {state} (jobs: {known})")
    rec = found[0]
    others = f"; also: {', '.join(r.name for r in found[1:])}" if len(found) > 1 else ""
    run = "running" if alive(rec) else "stopped"
    typer.echo(f"# {rec.name} {rec.version} ({run}, pid {rec.pid}) {rec.log_file}{others}", err=True)
    path = Path(rec.log_file)
    text, offset = _tail(path, tail)
    sys.stdout.write(text)
    sys.stdout.flush()
    while follow:
        time.sleep(0.5)
        try:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        elif not alive(rec):
            break
