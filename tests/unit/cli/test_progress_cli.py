"""Live progress on a terminal (``controller.cli.progress``): ``apply``'s spinner follows the apply
journal as actions start and finish, and ``wait``'s spinner shows the elapsed time and the state it
waits on; on a pipe nothing is drawn (``wait`` prints each new state as a plain line instead)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from controller.cli import progress
from controller.store.db import Store


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", lambda: Console(file=buf, force_terminal=True, width=200,
                                                              highlight=False))
    return buf


def _until(buf: io.StringIO, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in buf.getvalue():
            return True
        time.sleep(0.1)
    return False


def test_apply_progress_follows_the_journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    buf = _terminal(monkeypatch)
    state = f"sqlite:///{tmp_path}/s.db"
    store = Store(state)
    create = json.dumps({"op": "create", "kind": "Topic", "name": "dev.x"})
    with progress.journal_progress(state, "alpha", "dev", "applying alpha to dev"):
        assert _until(buf, "applying alpha to dev")
        store.journal_begin("r1", "alpha", "dev", "p1", "Topic/dev.x/create", create)
        assert _until(buf, "applying alpha to dev: starting; now: create Topic dev.x"), buf.getvalue()[-500:]
        store.journal_end("p1", "Topic/dev.x/create", "done")
        assert _until(buf, "applying alpha to dev: 1 done"), buf.getvalue()[-500:]


def test_wait_spinner_on_a_terminal_and_on_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = _terminal(monkeypatch)
    with progress.spinner("waiting for alpha: stage prod Succeeded") as show:
        show("waiting for alpha: stage prod Succeeded; now 1.0.0 Progressing")
        assert _until(buf, "s] waiting for alpha: stage prod Succeeded; now 1.0.0 Progressing")
    pipe = io.StringIO()
    monkeypatch.setattr(progress, "console", lambda: Console(file=pipe, force_terminal=False, width=200))
    with progress.spinner("waiting") as show:
        for text in ("a", "a", "b"):
            show(text)
    assert pipe.getvalue() == "a\nb\n"  # one line per new text, nothing drawn
    with progress.journal_progress("sqlite:///unused.db", "alpha", "dev", "applying"):
        pass
    assert pipe.getvalue() == "a\nb\n"
