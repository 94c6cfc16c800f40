"""Just enough Thrift (binary protocol, unframed socket) for health checks without dependencies.

Values are typed so that a struct read from the server can be sent back unchanged:
a struct is ``{field_id: (ttype, value)}``, a list ``(elem_type, [values])``, a map
``(key_type, value_type, [(k, v), ...])``; strings are ``bytes``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = (
    0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15)
CALL, REPLY, EXCEPTION = 1, 2, 3
VERSION_1 = 0x80010000

Struct = dict[int, tuple[int, Any]]


class ThriftError(RuntimeError):
    pass


def _enc(t: int, v: Any, out: bytearray) -> None:
    if t == BOOL:
        out += struct.pack("!b", 1 if v else 0)
    elif t == BYTE:
        out += struct.pack("!b", v)
    elif t == DOUBLE:
        out += struct.pack("!d", v)
    elif t == I16:
        out += struct.pack("!h", v)
    elif t == I32:
        out += struct.pack("!i", v)
    elif t == I64:
        out += struct.pack("!q", v)
    elif t == STRING:
        b = v.encode() if isinstance(v, str) else bytes(v)
        out += struct.pack("!i", len(b)) + b
    elif t == STRUCT:
        encode_struct(v, out)
    elif t in (LIST, SET):
        et, items = v
        out += struct.pack("!bi", et, len(items))
        for it in items:
            _enc(et, it, out)
    elif t == MAP:
        kt, vt, items = v
        out += struct.pack("!bbi", kt, vt, len(items))
        for k, val in items:
            _enc(kt, k, out)
            _enc(vt, val, out)
    else:
        raise ThriftError(f"cannot encode type {t}")


def encode_struct(fields: Struct, out: bytearray) -> None:
    for fid in sorted(fields):
        t, v = fields[fid]
        out += struct.pack("!bh", t, fid)
        _enc(t, v, out)
    out += b"\x00"


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ThriftError("connection closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def unpack(self, fmt: str) -> Any:
        vals = struct.unpack(fmt, self.read(struct.calcsize(fmt)))
        return vals[0] if len(vals) == 1 else vals

    def value(self, t: int) -> Any:
        if t == BOOL:
            return self.unpack("!b") != 0
        if t == BYTE:
            return self.unpack("!b")
        if t == DOUBLE:
            return self.unpack("!d")
        if t == I16:
            return self.unpack("!h")
        if t == I32:
            return self.unpack("!i")
        if t == I64:
            return self.unpack("!q")
        if t == STRING:
            return self.read(self.unpack("!i"))
        if t == STRUCT:
            return self.struct()
        if t in (LIST, SET):
            et, n = self.unpack("!bi")
            return (et, [self.value(et) for _ in range(n)])
        if t == MAP:
            kt, vt, n = self.unpack("!bbi")
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(n)])
        raise ThriftError(f"cannot decode type {t}")

    def struct(self) -> Struct:
        fields: Struct = {}
        while True:
            t = self.unpack("!b")
            if t == STOP:
                return fields
            fid = self.unpack("!h")
            fields[fid] = (t, self.value(t))


class Client:
    """One unframed TBinaryProtocol connection (what HMS and a NOSASL HiveServer2 speak)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = _Reader(self.sock)
        self.seq = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, args: Struct) -> Struct:
        self.seq += 1
        out = bytearray(struct.pack("!I", VERSION_1 | CALL))
        _enc(STRING, method, out)
        out += struct.pack("!i", self.seq)
        encode_struct(args, out)
        self.sock.sendall(bytes(out))
        r = self.reader
        head = r.unpack("!I")
        if head & 0xFFFF0000 != VERSION_1:
            raise ThriftError(f"unexpected thrift header {head:#x}")
        name = r.read(r.unpack("!i")).decode()
        r.unpack("!i")
        result = r.struct()
        if head & 0xFF == EXCEPTION:
            msg = result.get(1, (STRING, b"?"))[1]
            raise ThriftError(f"{name}: server exception: {msg!r}")
        return result


def val(s: Struct, *path: int) -> Any:
    """Walk nested structs by field ids; None when a field is absent."""
    cur: Any = s
    for fid in path:
        if not isinstance(cur, dict) or fid not in cur:
            return None
        cur = cur[fid][1]
    return cur


# --- Hive metastore ---------------------------------------------------------------------------

def hms_databases(host: str, port: int, timeout: float = 10.0) -> list[str]:
    with Client(host, port, timeout) as c:
        res = c.call("get_all_databases", {})
    if 0 not in res:
        raise ThriftError(f"get_all_databases failed: {res.get(1)!r}")
    return [b.decode() for b in res[0][1][1]]


# --- HiveServer2 (TCLIService) ----------------------------------------------------------------

_SUCCESS = (0, 1)  # SUCCESS_STATUS, SUCCESS_WITH_INFO_STATUS


def _check_status(resp: Struct, what: str) -> None:
    code = val(resp, 1, 1)
    if code not in _SUCCESS:
        msg = val(resp, 1, 5) or b""
        raise ThriftError(f"{what}: status {code}: {msg.decode(errors='replace')[:500]}")


def hs2_query(host: str, port: int, sql: str, timeout: float = 30.0) -> list[list[Any]]:
    """Open a session, run ``sql`` synchronously, fetch up to 1000 rows (columnar), close."""
    with Client(host, port, timeout) as c:
        # TOpenSessionReq: client_protocol = HIVE_CLI_SERVICE_PROTOCOL_V6 (5), columnar results
        resp = c.call("OpenSession", {1: (STRUCT, {1: (I32, 5), 2: (STRING, "pipectl")})})[0][1]
        _check_status(resp, "OpenSession")
        session = resp[3]
        try:
            resp = c.call("ExecuteStatement", {1: (STRUCT, {1: session, 2: (STRING, sql),
                                                            4: (BOOL, False)})})[0][1]
            _check_status(resp, "ExecuteStatement")
            op = resp[2]
            rows: list[list[Any]] = []
            if val(resp, 2, 3):  # hasResultSet
                f = c.call("FetchResults", {1: (STRUCT, {1: op, 2: (I32, 0), 3: (I64, 1000)})})[0][1]
                _check_status(f, "FetchResults")
                cols: tuple[int, list[Struct]] = val(f, 3, 3) or (STRUCT, [])
                columns = []
                for col in cols[1]:
                    # TColumn is a union: one field set, holding {1: values list, 2: nulls}
                    (_, (_, inner)), = col.items()
                    columns.append(inner[1][1][1])
                rows = [list(r) for r in zip(*columns, strict=False)]
            c.call("CloseOperation", {1: (STRUCT, {1: op})})
            return rows
        finally:
            c.call("CloseSession", {1: (STRUCT, {1: session})})
