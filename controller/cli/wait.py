"""``pipectl wait release NAME --for …``: poll the release's status until a condition holds.

    pipectl wait release host-metrics --for stage=prod                    # prod Succeeded
    pipectl wait release host-metrics --for stage=canary,phase=RolledBack --timeout 20m
    pipectl wait release host-metrics --for stage=prod,version=1.1.0
    pipectl wait release host-metrics --for condition=Ready               # Ready=True
    pipectl wait release host-metrics --for phase=Succeeded

``--for`` is comma-separated ``key=value``: ``stage`` (then ``phase``, default Succeeded, and
``version`` are the stage's), ``phase`` and ``version`` (the release's), ``condition=TYPE[=STATUS]``
(STATUS default True). Exit 0 when it holds, 1 at ``--timeout`` (saying what the release shows
instead) or on an error, 2 for a malformed ``--for``. The status comes from the API or the store,
like ``pipectl get``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import typer

from controller.cli.options import RELEASE_ARG, SERVER_OPT, STATE_OPT, fail

KEYS = ("stage", "phase", "version", "condition")


@dataclass(frozen=True)
class WaitFor:
    stage: str | None = None
    phase: str | None = None
    version: str | None = None
    condition: tuple[str, str] | None = None

    def describe(self) -> str:
        parts = []
        if self.stage:
            parts.append(f"stage {self.stage} {self.phase or 'Succeeded'}")
        elif self.phase:
            parts.append(f"phase {self.phase}")
        if self.version:
            parts.append(f"version {self.version}")
        if self.condition:
            parts.append(f"condition {self.condition[0]}={self.condition[1]}")
        return ", ".join(parts)

    def met(self, status: dict[str, Any] | None) -> bool:
        if status is None:
            return False
        if self.stage:
            st = status.get("stages", {}).get(self.stage) or {}
            if st.get("phase") != (self.phase or "Succeeded"):
                return False
            if self.version and st.get("version") != self.version:
                return False
        else:
            if self.phase and status.get("phase") != self.phase:
                return False
            if self.version and status.get("version") != self.version:
                return False
        if self.condition:
            ctype, want = self.condition
            cond: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == ctype), {}
            )
            if cond.get("status") != want:
                return False
        return True


def parse_for(text: str) -> WaitFor:
    """``stage=prod,phase=Succeeded`` → WaitFor; ValueError says what is wrong."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not value or key not in KEYS:
            keys = ", ".join(KEYS)
            raise ValueError(f"--for {text!r}: expected key=value with key in {keys}, got {part!r}")
        if key in values:
            raise ValueError(f"--for {text!r}: {key} given twice")
        if key == "condition":
            ctype, _, status = value.partition("=")
            values[key] = (ctype, status or "True")
        else:
            values[key] = value
    if not values:
        raise ValueError("--for needs a condition, e.g. stage=prod or condition=Ready")
    return WaitFor(**values)


def summary(status: dict[str, Any] | None) -> str:
    """What the release shows now, in one line."""
    if status is None:
        return "the release has no status yet"
    stages = ", ".join(
        f"{n} {s.get('version') or '-'} {s.get('phase')}" + (f" ({s['reason']})" if s.get("reason") else "")
        for n, s in (status.get("stages") or {}).items()
    )
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    text = f"{status.get('version') or '-'} {status.get('phase') or '-'}"
    if ready:
        text += f", Ready={ready.get('status')}" + (f" ({ready['reason']})" if ready.get("reason") else "")
    return text + (f"; {stages}" if stages else "")


def wait(
    kind: str = typer.Argument(..., help="release"),
    name: str = RELEASE_ARG,
    for_: str = typer.Option(..., "--for", help="stage=S[,phase=P][,version=V] | phase=P | condition=Ready"),
    timeout: str = typer.Option("5m", "--timeout", help="Give up after this long (exit 1)."),
    interval: str = typer.Option("2s", "--interval", help="Poll interval."),
    state: str = STATE_OPT,
    server: str | None = SERVER_OPT,
) -> None:
    """Wait until a release's status meets --for; exit 1 with what it shows at --timeout."""
    from controller.cli.get import RELEASE_KINDS, statuses
    from controller.cli.progress import spinner
    from controller.model.manifest import parse_duration

    if kind not in RELEASE_KINDS:
        fail(f"unknown resource type {kind!r} (try: release)", 2)
    try:
        want = parse_for(for_)
        limit, every = parse_duration(timeout), parse_duration(interval)
    except ValueError as e:
        fail(str(e), 2)
    deadline = time.monotonic() + limit
    with spinner(f"waiting for {name}: {want.describe()}") as show:
        while True:
            status = statuses(state, server).get(name)
            if want.met(status):
                break
            if time.monotonic() >= deadline:
                fail(f"timed out after {timeout} waiting for release {name}: {want.describe()}; "
                     f"it shows {summary(status)}")
            show(f"waiting for {name}: {want.describe()}; now {summary(status)}")
            time.sleep(max(0.05, min(every, deadline - time.monotonic())))
    typer.echo(f"pipelinerelease/{name} condition met: {want.describe()}")
