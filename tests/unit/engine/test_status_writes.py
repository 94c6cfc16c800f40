"""A converged release's no-op pass writes no status (``Reconciler._write_status``): the stored
status is left as it is when the pass changed no field; any change is still written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.engine.world import RELEASE, World, repo_files


def _count_writes(w: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    written: list[str] = []
    real = w.store.put_status

    def counting(name: str, status: dict[str, Any], spec_digest: str | None = None) -> None:
        written.append(name)
        real(name, status, spec_digest)

    monkeypatch.setattr(w.store, "put_status", counting)
    return written


def test_a_no_op_pass_writes_no_status_and_a_change_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(tmp_path)
    w.reconciler.ops.share_live_state()
    w.commit(repo_files())
    w.promote_everywhere("1.0.0")
    w.settle()
    before = w.store.get_status(RELEASE)
    written = _count_writes(w, monkeypatch)
    seen: list[str] = []
    w.reconciler.on_status = lambda name, status: seen.append(name)
    w.clock.advance(120)
    assert not w.reconcile().errors
    assert written == [] and w.store.get_status(RELEASE) == before
    assert seen == [RELEASE]  # the status hook (metrics, Kubernetes mirror) still runs
    assert next(c for c in w.status().conditions if c.type == "Ready").status == "True"

    w.commit({"README.md": "a new commit: the status records the observed commit\n"})
    w.clock.advance(120)
    assert not w.reconcile().errors
    assert written == [RELEASE]
    after = w.store.get_status(RELEASE)
    assert after is not None and before is not None and after["observedCommit"] != before["observedCommit"]
