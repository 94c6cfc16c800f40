"""Leader election: the file lock (real processes, real flock) and the keeper. (The Lease:
test_leader_lease.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from controller.engine.leader import FileLockElector, LeadershipKeeper, elector_from_env
from controller.obs.metrics import REGISTRY

# --- FileLockElector ------------------------------------------------------------------------


def test_only_one_of_two_electors_acquires(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    b = FileLockElector(lock, identity="ctl-b")

    assert a.acquire() is True
    assert b.acquire() is False
    assert (a.is_leader, b.is_leader) == (True, False)
    assert a.renew() is True and b.renew() is False
    assert a.holder() == f"ctl-a {os.getpid()}"
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 1
    a.release()


def test_release_lets_the_other_in(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    b = FileLockElector(lock, identity="ctl-b")
    assert a.acquire()
    a.release()

    assert not a.is_leader
    assert REGISTRY.get_sample_value("pipectl_leader", {"instance": "ctl-a"}) == 0
    assert b.acquire() is True
    assert b.holder() == f"ctl-b {os.getpid()}"
    assert a.acquire() is False
    b.release()


def test_acquire_twice_is_idempotent(tmp_path: Path) -> None:
    a = FileLockElector(tmp_path / "l", identity="ctl-a")
    assert a.acquire() and a.acquire()
    a.release()
    a.release()


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from controller.engine.leader import FileLockElector
                from controller.obs.logging import configure_logging
                configure_logging()  # logs to stderr; stdout carries the answer
                e = FileLockElector({str(lock)!r}, identity="doomed")
                print("locked" if e.acquire() else "not locked", flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        me = FileLockElector(lock, identity="survivor")
        assert me.acquire() is False
        assert me.holder() == f"doomed {holder.pid}"

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        assert me.acquire() is True
        assert me.holder() == f"survivor {os.getpid()}"
        me.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_replaced_lock_file_means_leadership_is_lost(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    assert a.acquire()
    lock.unlink()  # someone "cleaned up" the state dir; a new process could now lock a new file
    b = FileLockElector(lock, identity="ctl-b")
    assert b.acquire() is True

    assert a.renew() is False
    assert not a.is_leader
    b.release()


def test_elector_from_env_defaults_to_the_file_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_LEADER_ELECTION", raising=False)
    e = elector_from_env(tmp_path)
    assert isinstance(e, FileLockElector) and e.path == tmp_path / "controller.lock"


def test_keeper_reports_a_lost_lock(tmp_path: Path) -> None:
    lock = tmp_path / "controller.lock"
    a = FileLockElector(lock, identity="ctl-a")
    assert a.acquire()
    lost = threading.Event()
    keeper = LeadershipKeeper(a, lost.set, period=0.01)
    keeper.start()
    assert not lost.wait(0.1)
    lock.unlink()
    assert lost.wait(5)
    keeper.stop()
