"""Real health checks (a request each server must answer), standard library only."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any

from controller.devstack import thriftmini


class ProbeError(RuntimeError):
    pass


# --- Kafka: a Metadata v1 request over the wire protocol --------------------------------------

def _kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!h", len(b)) + b


def kafka_metadata(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    """Brokers and controller id as the broker reports them (unfenced brokers only)."""
    body = struct.pack("!hhi", 3, 1, 7) + _kstr("pipectl-devstack") + struct.pack("!i", -1)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("!i", len(body)) + body)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            if not chunk:
                raise ProbeError("kafka closed the connection")
            buf += chunk
        (size,) = struct.unpack("!i", buf)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                raise ProbeError("kafka closed the connection mid-response")
            data += chunk
    pos = 4  # correlation id
    (nb,) = struct.unpack_from("!i", data, pos)
    pos += 4
    brokers = []
    for _ in range(nb):
        node, hl = struct.unpack_from("!ih", data, pos)
        pos += 6
        bhost = data[pos:pos + hl].decode()
        pos += hl
        (bport, rl) = struct.unpack_from("!ih", data, pos)
        pos += 6
        if rl > 0:
            pos += rl
        brokers.append({"id": node, "host": bhost, "port": bport})
    (controller,) = struct.unpack_from("!i", data, pos)
    pos += 4
    (ntopics,) = struct.unpack_from("!i", data, pos)
    return {"brokers": brokers, "controller_id": controller, "topics": ntopics}


def kafka_check(host: str, port: int, timeout: float = 5.0) -> str:
    md = kafka_metadata(host, port, timeout)
    if not md["brokers"] or md["controller_id"] < 0:
        raise ProbeError(f"no active broker/controller yet: {md}")
    return f"{len(md['brokers'])} broker(s), controller {md['controller_id']}, {md['topics']} topic(s)"


# --- Hive metastore and HiveServer2 ----------------------------------------------------------

def metastore_check(host: str, port: int, timeout: float = 10.0) -> str:
    dbs = thriftmini.hms_databases(host, port, timeout)
    if "default" not in dbs:
        raise ProbeError(f"metastore answered without a default database: {dbs}")
    return f"{len(dbs)} database(s)"


def hs2_check(host: str, port: int, timeout: float = 30.0) -> str:
    rows = thriftmini.hs2_query(host, port, "SELECT 1", timeout)
    if rows != [[1]]:
        raise ProbeError(f"SELECT 1 returned {rows!r}")
    # The error path too: Spark reads its error classes once per JVM, and a read that races another
    # (two sessions failing at once right after a start) leaves every later error, so every query
    # naming a missing database or table, failing with NoClassDefFoundError SparkThrowableHelper.
    try:
        thriftmini.hs2_query(host, port, "SHOW TABLES IN pipectl_probe_no_such_db", timeout)
    except thriftmini.ThriftError as e:
        if "NoClassDefFoundError" in str(e) or "Could not initialize class" in str(e):
            raise ProbeError(f"the server cannot report errors (restart it): {str(e)[:200]}") from None
        return "SELECT 1 ok, errors ok"
    raise ProbeError("SHOW TABLES IN a missing database did not fail")


# --- HTTP helpers ------------------------------------------------------------------------------

def http_json(url: str, *, method: str = "GET", data: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    if not url.startswith("http://"):
        raise ProbeError(f"refusing non-http URL {url!r}")
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        body = e.read()
        status = e.code
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode("utf-8", "replace")


# --- Presto ------------------------------------------------------------------------------------

def presto_info(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    status, info = http_json(f"http://{host}:{port}/v1/info", timeout=timeout)
    if status != 200 or not isinstance(info, dict):
        raise ProbeError(f"/v1/info -> {status}")
    return info


def presto_query(host: str, port: int, sql: str, *, catalog: str = "hive", timeout: float = 60.0
                 ) -> list[list[Any]]:
    headers = {"X-Presto-User": "pipectl", "X-Presto-Catalog": catalog, "X-Presto-Schema": "default",
               "X-Presto-Source": "pipectl-devstack"}
    deadline = time.monotonic() + timeout
    status, res = http_json(f"http://{host}:{port}/v1/statement", method="POST", data=sql.encode(),
                            headers=headers, timeout=timeout)
    if status != 200 or not isinstance(res, dict):
        raise ProbeError(f"POST /v1/statement -> {status}: {str(res)[:300]}")
    rows: list[list[Any]] = []
    while True:
        if "error" in res:
            err = res["error"]
            raise ProbeError(f"query failed: {err.get('message', err)}")
        rows.extend(res.get("data") or [])
        nxt = res.get("nextUri")
        if not nxt:
            return rows
        if time.monotonic() > deadline:
            raise ProbeError("query timed out")
        status, res = http_json(nxt, headers=headers, timeout=timeout)
        if status != 200 or not isinstance(res, dict):
            raise ProbeError(f"GET nextUri -> {status}")


def presto_check(host: str, port: int, timeout: float = 30.0) -> str:
    info = presto_info(host, port)
    if info.get("starting", True):
        raise ProbeError("presto is still starting")
    schemas = [r[0] for r in presto_query(host, port, "SHOW SCHEMAS FROM hive", timeout=timeout)]
    if "default" not in schemas:
        raise ProbeError(f"hive catalog has no default schema: {schemas}")
    return f"version {info.get('nodeVersion', {}).get('version')}, {len(schemas)} hive schema(s)"


# --- Airflow -----------------------------------------------------------------------------------

def airflow_health(host: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    status, body = http_json(f"http://{host}:{port}/health", timeout=timeout)
    if status != 200 or not isinstance(body, dict):
        raise ProbeError(f"/health -> {status}")
    return body


def airflow_api(host: str, port: int, path: str, user: str, password: str,
                timeout: float = 10.0) -> tuple[int, Any]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return http_json(f"http://{host}:{port}/api/v1/{path.lstrip('/')}",
                     headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
                     timeout=timeout)


def airflow_webserver_check(host: str, port: int, user: str, password: str) -> str:
    h = airflow_health(host, port)
    if h.get("metadatabase", {}).get("status") != "healthy":
        raise ProbeError(f"metadatabase not healthy: {h}")
    status, body = airflow_api(host, port, "dags?limit=1", user, password)
    if status in (401, 403):
        raise ProbeError(f"authenticated /api/v1/dags refused ({status})")
    if status != 200:
        raise ProbeError(f"/api/v1/dags -> {status}: {str(body)[:200]}")
    return f"api ok, {body.get('total_entries', '?')} dag(s)"


def airflow_scheduler_check(host: str, port: int) -> str:
    h = airflow_health(host, port)
    sched = h.get("scheduler", {})
    if sched.get("status") != "healthy":
        raise ProbeError(f"scheduler not healthy: {sched}")
    return f"heartbeat {sched.get('latest_scheduler_heartbeat')}"
