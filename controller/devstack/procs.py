"""Start detached processes, remember them in pid files, find them again, stop them, size them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.devstack.layout import StackError

PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_LOG_BYTES = 20 * 1024 * 1024

_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces/parens: split after the last ')'
    rest = raw[raw.rfind(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def start_time(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[19]) if f else None  # field 22: starttime


def pgid_of(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[2]) if f else None  # field 5: pgrp


def is_zombie(pid: int) -> bool:
    f = _stat_fields(pid)
    return f is not None and f[0] in ("Z", "X")


@dataclass
class ProcRecord:
    component: str
    pid: int
    starttime: int
    argv: list[str]
    started_at: float
    log: str

    def alive(self) -> bool:
        st = start_time(self.pid)
        return st is not None and st == self.starttime and not is_zombie(self.pid)

    def group_pids(self) -> list[int]:
        """Live processes of this record's session (started with start_new_session, so the session
        id is our pid). A session, not a process group: Airflow's DagFileProcessorManager moves to
        a process group of its own but stays in the session."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            f = _stat_fields(int(entry))
            # f[3] is field 6 (session), f[19] field 22 (start time): children start after us
            if f and int(f[3]) == self.pid and f[0] not in ("Z", "X") and int(f[19]) >= self.starttime:
                pids.append(int(entry))
        return pids

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.group_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            except OSError:
                continue
        return total

    def pss_bytes(self) -> int:
        total = 0
        for pid in self.group_pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            except OSError:
                continue
        return total


def read_record(pidfile: Path) -> ProcRecord | None:
    try:
        data: dict[str, Any] = json.loads(pidfile.read_text())
        return ProcRecord(
            component=data["component"], pid=int(data["pid"]), starttime=int(data["starttime"]),
            argv=list(data["argv"]), started_at=float(data["started_at"]), log=str(data["log"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(pidfile: Path, rec: ProcRecord) -> None:
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec.__dict__, indent=1))
    tmp.replace(pidfile)


def live_record(pidfile: Path) -> ProcRecord | None:
    rec = read_record(pidfile)
    return rec if rec is not None and rec.alive() else None


def _rotate(log: Path) -> None:
    try:
        if log.stat().st_size > MAX_LOG_BYTES:
            log.replace(log.with_suffix(log.suffix + ".1"))
    except FileNotFoundError:
        pass


def spawn(
    component: str,
    argv: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    env: Mapping[str, str],
    cwd: Path,
    user: str | None = None,
) -> ProcRecord:
    """Start ``argv`` in its own session (it survives our exit), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(log)
    with open(log, "ab") as fh:
        fh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {component}: "
                 f"{' '.join(argv)}\n".encode())
        fh.flush()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=user, extra_groups=[])
        proc = subprocess.Popen(
            list(argv), cwd=str(cwd), env=dict(env), stdin=subprocess.DEVNULL, stdout=fh,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, **kwargs,
        )
    st = None
    for _ in range(50):
        st = start_time(proc.pid)
        if st is not None:
            break
        time.sleep(0.01)
    rec = ProcRecord(component=component, pid=proc.pid, starttime=st or 0, argv=list(argv),
                     started_at=time.time(), log=str(log))
    write_record(pidfile, rec)
    # Keep the Popen so that reap() can collect it if it dies while this CLI still runs
    # (alive() treats a zombie as dead anyway). Servers outlive us: they are re-parented to init.
    with _children_lock:
        _children[proc.pid] = proc
    return rec


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap() -> None:
    """Collect servers spawned by this CLI that already exited (only those: waiting on any child
    would steal the exit status of commands that other threads are running)."""
    with _children_lock:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def _signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_session_gone(rec: ProcRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        reap()
        if not rec.alive() and not rec.group_pids():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def stop(rec: ProcRecord, timeout: float = 20.0) -> str:
    """SIGTERM the process group of ``rec`` (its leader forwards it to its workers), then SIGTERM
    whatever is left in its session, then SIGKILL the session after ``timeout``."""
    if not rec.alive() and not rec.group_pids():
        return "not running"
    if rec.alive():
        _signal_group(rec.pid, signal.SIGTERM)
        _signal_group(rec.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process must run to exit
        if _wait_session_gone(rec, timeout * 0.75):
            return "stopped"
    _signal_pids(rec.group_pids(), signal.SIGTERM)
    _signal_pids(rec.group_pids(), signal.SIGCONT)
    if _wait_session_gone(rec, timeout * 0.25):
        return "stopped"
    _signal_pids(rec.group_pids(), signal.SIGKILL)
    _signal_group(rec.pid, signal.SIGKILL)
    _wait_session_gone(rec, 10)
    return "killed"


def wait_gone(rec: ProcRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not rec.alive() and not rec.group_pids():
            return True
        time.sleep(0.2)
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def wait_port_free(host: str, port: int, timeout: float) -> bool:
    """A killed JVM's leader thread can look dead (zombie) while its other threads still hold
    the listening socket for a moment."""
    deadline = time.monotonic() + timeout
    while port_open(host, port, timeout=0.5):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run(argv: Sequence[str], *, log: Path | None = None, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 600, user: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command to completion; output goes to ``log`` (or is captured)."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=user, extra_groups=[])
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            fh.write(f"\n===== {time.strftime('%H:%M:%S')} $ {' '.join(argv)}\n".encode())
            fh.flush()
            res = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=fh,
                                 stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
                                 cwd=str(cwd) if cwd else None, timeout=timeout, check=False,
                                 **kwargs)
        out = subprocess.CompletedProcess(res.args, res.returncode, "", "")
    else:
        out = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             env=dict(env) if env is not None else None,
                             cwd=str(cwd) if cwd else None, timeout=timeout, check=False, **kwargs)
    if check and out.returncode != 0:
        detail = (out.stderr or out.stdout or "").strip()[-2000:]
        where = ""
        if log is not None:
            where = f" (see {log})"
            detail = f"--- last lines of {log}:\n{tail(log, 30)}"
        raise StackError(f"command failed ({out.returncode}){where}: {' '.join(argv)}\n{detail}")
    return out
