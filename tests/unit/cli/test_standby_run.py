"""``pipectl controller run`` as a standby: while another process holds the leader lock it serves
/healthz 200 (alive) and /readyz 503 (not ready) on its --listen address, opens nothing else, and
exits 0 on SIGTERM without ever leading (the Deployment's probes rely on this: deployment.yaml)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from controller.engine.leader import FileLockElector

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_standby_answers_healthz_200_and_readyz_503_then_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    leader = FileLockElector(state / "controller.lock", identity="the-leader")
    assert leader.acquire()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_")}
    env.update(PIPECTL_WEBHOOK_SECRET="s3cret-for-the-test", HOME=str(tmp_path))
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli.main", "controller", "run", "--repo", str(tmp_path / "repo"),
             "--state", f"sqlite:///{state / 'state.db'}", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                health = _get(port, "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert health == (200, {"ok": True, "leader": False})
        assert _get(port, "/readyz") == (503, {"ready": False, "leader": False})
        code, body = _get(port, "/api/v1/releases")
        assert code == 503 and body["reason"] == "NotLeader"
        time.sleep(2.5)  # a few more acquire attempts: still a standby, still alive
        assert proc.poll() is None and _get(port, "/healthz")[0] == 200
        assert "standing by" in log.read_text()
        assert not (state / "state.db").exists()  # a standby opens no state store
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        leader.release()
    assert rc == 0, log.read_text()
