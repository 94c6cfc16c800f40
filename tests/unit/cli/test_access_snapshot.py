"""Approvals through the controller's API are checked against what the controller works from: with
``--source kubernetes`` the objects it last read, since the git repository then holds environments
and files but no releases (``controller/cli/access.py``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from controller.audit.approvals import ApprovalRefused
from controller.cli import access
from controller.engine.kube_source import KubeSource


def _approve_with(monkeypatch: pytest.MonkeyPatch, ctl: Any, rt: Any) -> list[Any]:
    seen: list[Any] = []

    def fake_approve(store: Any, snap: Any, req: Any, who: Any) -> Any:
        seen.append(snap)
        return SimpleNamespace(as_dict=lambda: {"ok": True})

    monkeypatch.setattr(access, "approve", fake_approve)
    req: Any = SimpleNamespace()
    assert access.approver(rt, ctl)(req, req) == {"ok": True}
    return seen


def test_with_the_kubernetes_source_an_approval_is_checked_against_the_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = SimpleNamespace(commit="abc", releases={"from-an-object": object()})
    ctl = SimpleNamespace(source=KubeSource.__new__(KubeSource), latest=objects, last_commit="abc")
    rt = SimpleNamespace(store=None, source=SimpleNamespace(is_git=True))
    monkeypatch.setattr(access, "snapshot_at", lambda *a: pytest.fail("read the git checkout"))
    assert _approve_with(monkeypatch, ctl, rt) == [objects]


def test_before_the_first_read_of_the_objects_an_approval_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = SimpleNamespace(source=KubeSource.__new__(KubeSource), latest=None, last_commit=None)
    rt = SimpleNamespace(store=None, source=SimpleNamespace(is_git=True))
    with pytest.raises(ApprovalRefused) as e:
        _approve_with(monkeypatch, ctl, rt)
    assert e.value.status == 503


def test_with_git_an_approval_is_checked_at_the_controllers_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = SimpleNamespace(source=object(), latest=None, last_commit="c0ffee")
    rt = SimpleNamespace(store=None, source=SimpleNamespace(is_git=True))
    monkeypatch.setattr(access, "snapshot_at", lambda rt, commit: f"snapshot@{commit}")
    assert _approve_with(monkeypatch, ctl, rt) == ["snapshot@c0ffee"]
