"""Live progress on a terminal (rich): ``pipectl apply`` follows the apply journal while it runs,
``pipectl wait`` shows the state it is waiting on. Nothing is drawn when stderr is not a terminal
(pipes and CI logs get plain lines from the verbs themselves)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console


def console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def live() -> bool:
    return console().is_terminal


def _naive_utc(ts: Any) -> datetime | None:
    if not isinstance(ts, datetime):
        return None
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def journal_line(rows: list[dict[str, Any]], since: datetime) -> str:
    """``3 done, 1 failed; now: create Topic dev.x`` for the journal rows started since ``since``."""
    start = _naive_utc(since)
    mine = [r for r in rows if (t := _naive_utc(r.get("started_at"))) is not None and start and t >= start]
    counts: dict[str, int] = {}
    for r in mine:
        counts[str(r["state"])] = counts.get(str(r["state"]), 0) + 1
    done = [f"{n} {state}" for state, n in sorted(counts.items()) if state != "started"]
    text = ", ".join(done) or "starting"
    running = [r for r in mine if r["state"] == "started"]
    if running:
        try:
            a = json.loads(running[-1]["action"])
            what = f"{a.get('op')} {a.get('kind')} {a.get('name')}"
        except (ValueError, TypeError, AttributeError):
            what = str(running[-1].get("action_id"))
        text += f"; now: {what}"
    return text


@contextmanager
def journal_progress(state: str, release: str, stage: str, what: str) -> Iterator[None]:
    """A spinner with the apply journal's counts while the block runs (terminals only)."""
    con = console()
    if not con.is_terminal:
        yield
        return
    from controller.store.db import Store

    since = datetime.now(UTC)
    stop = threading.Event()
    with con.status(f"{what}…") as status:

        def poll() -> None:
            store = Store(state)
            while not stop.wait(0.5):
                try:
                    rows = [r for r in store.journal_rows(release) if r.get("stage") == stage]
                except Exception:  # a busy store only delays the next line  # noqa: S112
                    continue
                status.update(f"{what}: {journal_line(rows, since)}")

        t = threading.Thread(target=poll, name="pipectl-progress", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=2)


@contextmanager
def spinner(what: str) -> Iterator[Callable[[str], None]]:
    """A spinner whose text the block updates (with the time since it started); on a pipe, each
    new text is one line on stderr."""
    con = console()
    if not con.is_terminal:
        last: list[str] = [""]

        def line(text: str) -> None:
            if text != last[0]:
                con.print(text, markup=False)
                last[0] = text

        yield line
        return
    started = time.monotonic()
    with con.status(what) as status:
        yield lambda text: status.update(f"[{time.monotonic() - started:.0f}s] {text}")
