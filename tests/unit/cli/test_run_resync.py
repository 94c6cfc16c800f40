"""``pipectl controller run --resync``: the watch's re-list period (``--source kubernetes``,
``controller/engine/kube_watch.py``) reaches ``run_controller`` in seconds; under 1 s is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clikit import invoke

import controller.cli.run as run


def test_resync_reaches_the_controller_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(*args: Any, **kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    monkeypatch.setattr(run, "run_controller", fake_run)
    out = invoke("controller", "run", "--repo", str(tmp_path), "--state", f"sqlite:///{tmp_path}/s.db",
                 "--source", "kubernetes", "--namespace", "team-a", "--resync", "5m")
    assert out.exit_code == 0, out.output
    assert seen["resync"] == 300.0 and seen["namespaces"] == ("team-a",)


def test_a_resync_under_one_second_is_refused(tmp_path: Path) -> None:
    out = invoke("controller", "run", "--repo", str(tmp_path), "--source", "kubernetes", "--resync", "0s")
    assert out.exit_code == 2 and "--resync '0s': at least 1s" in out.stderr, out.output
