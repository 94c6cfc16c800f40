"""`pipectl suspend`: the reconciler skips a suspended release (Ready=False, reason Suspended, nothing
planned or applied) and converges it again once resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.model.reasons import Reason
from controller.store.suspend import set_suspended, suspended_releases, suspension
from tests.unit.engine.world import RELEASE, World, repo_files

pytestmark = pytest.mark.usefixtures("quiet_logs")


def test_a_suspended_release_is_skipped_until_resumed(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.commit(repo_files())
    assert set_suspended(w.store, RELEASE, True, "alice", "data freeze")
    assert not set_suspended(w.store, RELEASE, True, "bob")  # already suspended: unchanged
    assert suspension(w.store, RELEASE) is not None and set(suspended_releases(w.store)) == {RELEASE}
    for _ in range(3):
        res = w.reconcile()
        assert not res.errors and res.requeue_after is None
        w.clock.advance(30)
    ready = w.ready()
    assert (ready.status, ready.reason) == ("False", Reason.SUSPENDED)
    assert "suspended by alice" in ready.message and "data freeze" in ready.message
    assert "pipectl resume" in ready.message
    assert all(not objs for objs in w.objects().values()), w.objects()  # nothing was applied
    assert w.status().stages == {}

    assert set_suspended(w.store, RELEASE, False, "alice")
    assert suspension(w.store, RELEASE) is None and suspended_releases(w.store) == {}
    w.promote_everywhere("1.0.0")
    assert w.ready().status == "True"
