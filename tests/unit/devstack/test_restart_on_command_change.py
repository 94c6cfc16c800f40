"""``devstack up`` restarts a running component whose command changed (another checkout's jars or
flags) and keeps one whose command is the same; real processes (``sleep``), no stack."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from controller.devstack import procs
from controller.devstack.component import Component, Context
from controller.devstack.layout import Layout
from controller.devstack.stack import Stack, command_change


class Sleeper(Component):
    name = "sleeper"
    has_port = False
    timeout = 10.0

    def __init__(self, ctx: Context, seconds: str) -> None:
        super().__init__(ctx)
        self.seconds = seconds

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        return ["sleep", self.seconds], dict(os.environ), self.layout.root

    def check(self) -> str:
        return "ok"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    layout = Layout(tmp_path)
    layout.run.mkdir(parents=True, exist_ok=True)
    return Context(layout=layout, java_home=Path("/usr"), spark_home=Path("/nonexistent"),
                   spark_version="", python=sys.executable, pg_bin=None)


def run(stack: Stack, comp: Component) -> tuple[str, procs.ProcRecord]:
    detail = stack._component_runner(comp)()
    rec = procs.live_record(comp.pidfile)
    assert rec is not None
    return detail, rec


def test_same_command_keeps_the_process_and_a_changed_one_restarts_it(tmp_path: Path, ctx: Context) -> None:
    said: list[str] = []
    stack = Stack(tmp_path, say=said.append)
    first = None
    try:
        detail, first = run(stack, Sleeper(ctx, "300"))
        assert detail.startswith("healthy")
        detail, again = run(stack, Sleeper(ctx, "300"))
        assert detail.startswith("already running") and again.pid == first.pid
        detail, second = run(stack, Sleeper(ctx, "301"))
        assert detail.startswith("healthy") and second.pid != first.pid
        assert not first.alive()
        assert any("with another command (argument 1: 300 -> 301); restarting it" in m for m in said), said
    finally:
        for rec in (first, procs.live_record(Sleeper(ctx, "0").pidfile)):
            if rec is not None and rec.alive():
                procs.stop(rec, timeout=5)


def test_command_change_names_the_first_difference(ctx: Context) -> None:
    rec = procs.ProcRecord("sleeper", 1, 1, ["sleep", "300"], 0.0, "")
    assert command_change(Sleeper(ctx, "300"), rec) is None
    assert command_change(Sleeper(ctx, "9" * 80), rec) == f"argument 1: 300 -> {'9' * 57}..."
    longer = procs.ProcRecord("sleeper", 1, 1, ["sleep", "300", "x"], 0.0, "")
    assert command_change(Sleeper(ctx, "300"), longer) == "3 -> 2 arguments"

    class Broken(Sleeper):
        def command(self) -> tuple[list[str], dict[str, str], Path]:
            raise FileNotFoundError("a jar not downloaded yet")

    assert command_change(Broken(ctx, "300"), rec) is None
