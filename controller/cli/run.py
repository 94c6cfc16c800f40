"""``pipectl controller run``: wire everything, take the lock, serve the API, loop until SIGTERM."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from controller.api.server import ApiServer, ApiState
from controller.cli.people import record_approval
from controller.engine.controller import Controller, state_dir_of
from controller.engine.k8s_status import StatusMirror
from controller.engine.leader import FileLockElector, LeadershipKeeper, elector_from_env
from controller.model.errors import PipectlError
from controller.obs import metrics
from controller.obs.logging import configure_logging
from controller.wiring import build_runtime


def _token(state_dir: Path) -> str:
    tok = os.environ.get("PIPECTL_API_TOKEN")
    path = state_dir / "api-token"
    if tok:
        return tok
    if path.exists():
        return path.read_text().strip()
    tok = secrets.token_urlsafe(24)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


def run_controller(
    repo: str, branch: str, state: str, listen: str, interval: float, bake: float, log_format: str
) -> int:
    configure_logging(json=log_format == "json")
    log = structlog.get_logger("pipectl.controller")
    state_dir = state_dir_of(state)
    elector = elector_from_env(state_dir)
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal received; finishing the current action", signal=signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    waited = False
    while not elector.acquire():
        if not waited:
            holder = elector.holder() if isinstance(elector, FileLockElector) else None
            log.info("another instance is leader; standing by", holder=holder)
            waited = True
        if stopping.wait(timeout=2.0):
            return 0
    try:
        rt = build_runtime(repo, state, branch=branch, bake_seconds=bake)
    except PipectlError as e:
        log.error("cannot start", error=str(e))
        return 1
    ctl = Controller(rt.source, rt.reconciler, interval=interval, stop=rt.reconciler.stop)

    mirror = StatusMirror.from_env()

    def on_status(name: str, status: Any) -> None:
        for stage, st in status.stages.items():
            metrics.set_release_info(name, stage, st.version, str(st.phase))
        mirror.mirror(name, status)

    rt.reconciler.on_status = on_status

    def approve(release: str, stage: str, approver: str) -> dict[str, Any]:
        raw = rt.store.get_status(release)
        if raw is None:
            raise LookupError(f"release {release!r} not found")
        version = raw.get("version")
        new = record_approval(rt.store, release, stage, version, approver)
        return {"release": release, "stage": stage, "version": version, "approver": approver, "new": new}

    def health() -> dict[str, Any]:
        return {
            "ok": elector.is_leader and ctl.last_error is None,
            "leader": elector.is_leader,
            "commit": ctl.last_commit,
            "error": ctl.last_error,
        }

    api = ApiServer(
        listen, ApiState(rt.store, _token(state_dir), ctl.trigger, health, metrics.render, approve)
    )
    api.start()
    log.info("api listening", address=f"{api.address[0]}:{api.address[1]}")

    def halt() -> None:
        ctl.stop.set()
        ctl.wake.set()

    def lost() -> None:
        log.error("lost leadership; stopping")
        halt()

    keeper = LeadershipKeeper(elector, on_lost=lost)
    keeper.start()
    worker = threading.Thread(target=ctl.run, name="pipectl-reconciler")
    worker.start()
    try:
        next_verify = 0.0
        while worker.is_alive():
            if stopping.is_set():
                halt()
            if time.monotonic() >= next_verify:
                ok, msg = rt.ledger.verify()
                metrics.set_audit_chain_ok(ok)
                if not ok:
                    log.error("audit chain broken", detail=msg)
                next_verify = time.monotonic() + 300
            worker.join(timeout=1)
    finally:
        keeper.stop()
        api.stop()
        elector.release()
    return 0
