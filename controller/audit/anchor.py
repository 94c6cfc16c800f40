"""Signed anchors of the audit ledger's head, kept outside the state store.

A hash chain alone cannot tell a ledger that lost its last records (or was swapped for an older
backup, or emptied) from one that never had them. So after every append the ledger's head —
sequence number, head hash, record count, time — is signed with an Ed25519 key that is not in the
state store and appended as one JSON line to an append-only anchor file, and, when
``PIPECTL_ANCHOR_KAFKA=BOOTSTRAP/TOPIC`` is set, produced to that Kafka topic (an off-host copy:
whoever can rewrite the anchor file on the controller's host can also truncate it).

Where (for a state store URL): the key is ``<state dir>/audit-anchor.key`` (mode 0600, created on
first use) unless ``--anchor-key``/``PIPECTL_ANCHOR_KEY`` names another file; the anchors are
``<state dir>/audit-anchors.jsonl`` unless ``--anchors``/``PIPECTL_ANCHORS`` does. The state dir of
``sqlite:///.pipectl/state.db`` is ``.pipectl``; of any other store, ``.pipectl`` in the working
directory. Each line names its ledger (``sqlite:state.db``, or the URL without credentials), so
one anchor file can serve several stores.

A line: ``{"v":1,"ledger":…,"seq":N,"head":"<hash of #N>","count":N,"time":…,"key":"<key id>",
["restore":{…},] "sig":"<base64 Ed25519 over the JCS text of the other fields>"}``.
``check_anchored`` (used by ``Ledger.verify``) says how they are compared with the chain.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.audit.chain import ChainCheck, canonical

log = structlog.get_logger(__name__)
KEY_ENV = "PIPECTL_ANCHOR_KEY"
FILE_ENV = "PIPECTL_ANCHORS"
KAFKA_ENV = "PIPECTL_ANCHOR_KAFKA"
KEY_NAME = "audit-anchor.key"
FILE_NAME = "audit-anchors.jsonl"

Publish = Callable[[str, bytes], None]
"""``publish(ledger, line)``: send one signed anchor line elsewhere (Kafka)."""


class AnchorError(RuntimeError):
    """The anchor key cannot be read or created, or an anchor cannot be written."""


def state_dir_of(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).parent if url.startswith("sqlite:///") else Path(".pipectl")


def ledger_id(url: str) -> str:
    """Which ledger an anchor line belongs to: the SQLite file's name (the anchor file lives in
    its directory, so moving the directory keeps it), else the URL without user and password."""
    if url.startswith("sqlite:///"):
        return "sqlite:" + Path(url.removeprefix("sqlite:///")).name
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@dataclass(frozen=True)
class Head:
    """The ledger's last record: its number, its hash, and how many records there are."""

    seq: int
    hash: str
    count: int


@dataclass(frozen=True)
class Anchor:
    """One signed anchor line of this ledger (``line``: its line number in the file)."""

    line: int
    seq: int
    head: str
    count: int
    time: str
    restore: dict[str, Any] | None = None

    def brief(self) -> dict[str, Any]:
        return {"seq": self.seq, "head": self.head, "count": self.count, "time": self.time}


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as e:
        raise AnchorError(f"anchor key {path}: not a PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorError(f"anchor key {path}: not an Ed25519 key")
    return key


def _create_key(path: Path) -> Ed25519PrivateKey:
    """Create the key with mode 0600; two processes racing both end up with the winner's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and refuses to replace a key another writer made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _load_key(path)


def _append_line(path: Path, data: bytes) -> None:
    """Append one line under an exclusive lock (concurrent writers never interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


class Anchors:
    """The signing key and the anchor file of one ledger."""

    def __init__(self, key_path: Path, file: Path, ledger: str, publish: Publish | None = None):
        self.key_path, self.file, self.ledger, self.publish = key_path, file, ledger, publish
        self._key: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_url(cls, url: str, key_path: Path | None = None, file: Path | None = None) -> Anchors:
        """The anchors of the store at ``url``: explicit paths, else the environment, else the
        store's state directory (module doc); Kafka when ``PIPECTL_ANCHOR_KAFKA`` is set."""
        state = state_dir_of(url)
        key = key_path or Path(os.environ.get(KEY_ENV) or state / KEY_NAME)
        anchors = file or Path(os.environ.get(FILE_ENV) or state / FILE_NAME)
        kafka = os.environ.get(KAFKA_ENV)
        return cls(key, anchors, ledger_id(url), kafka_publisher(kafka) if kafka else None)

    def _signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                try:
                    self._key = _load_key(self.key_path)
                except FileNotFoundError:
                    self._key = _create_key(self.key_path)
            return self._key

    def sign(self, head: Head, restore: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sign ``head``, append it to the anchor file, then publish it (when configured)."""
        try:
            key = self._signing_key()
        except OSError as e:
            raise AnchorError(f"anchor key {self.key_path}: {e}") from None
        body: dict[str, Any] = {
            "v": 1,
            "ledger": self.ledger,
            "seq": head.seq,
            "head": head.hash,
            "count": head.count,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "key": key_id(key.public_key()),
        }
        if restore is not None:
            body["restore"] = restore
        sig = base64.b64encode(key.sign(canonical(body).encode("utf-8"))).decode("ascii")
        line = (canonical({**body, "sig": sig}) + "\n").encode("utf-8")
        try:
            _append_line(self.file, line)
        except OSError as e:
            raise AnchorError(f"anchor file {self.file}: {e}") from None
        if self.publish is not None:
            try:
                self.publish(self.ledger, line)
            except Exception as e:  # the file anchor is written; the off-host copy catches up later
                log.error("audit anchor not published", seq=head.seq, error=f"{type(e).__name__}: {e}")
        return body

    def read(self) -> tuple[list[Anchor], str | None]:
        """This ledger's anchors in file order, and the first problem with the file (a line that is
        not JSON, a bad signature, anchors without their key), if any."""
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], None
        lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
        if not lines:
            return [], None
        try:
            public = _load_key(self.key_path).public_key()
        except (FileNotFoundError, AnchorError) as e:
            why = "is missing" if isinstance(e, FileNotFoundError) else f"cannot be read: {e}"
            return [], f"{self.file} holds {len(lines)} anchor(s) but the anchor key {self.key_path} {why}"
        out: list[Anchor] = []
        for n, raw in lines:
            anchor, problem = _parse_line(raw, n, public, str(self.file), str(self.key_path))
            if problem:
                return out, problem
            if anchor is not None and anchor[0] == self.ledger:
                out.append(anchor[1])
        return out, None

    def latest(self) -> Anchor | None:
        """The highest anchor of the current epoch (since the last restore), signatures checked."""
        anchors, _ = self.read()
        epoch = _epochs(anchors)[-1] if anchors else []
        return max(epoch, key=lambda a: a.seq) if epoch else None


def _parse_line(
    raw: str, n: int, public: Ed25519PublicKey, file: str, key_path: str
) -> tuple[tuple[str, Anchor] | None, str | None]:
    where = f"{file}:{n}"
    try:
        body = json.loads(raw)
        sig = base64.b64decode(body.pop("sig"), validate=True)
        ledger, seq, head, count, time = (
            str(body["ledger"]), int(body["seq"]), str(body["head"]), int(body["count"]), str(body["time"])
        )
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None, f"{where}: not a signed anchor line"
    try:
        public.verify(sig, canonical(body).encode("utf-8"))
    except InvalidSignature:
        return None, (
            f"{where}: bad signature on the anchor of #{seq} (signed by key {body.get('key')}; "
            f"the anchor key {key_path} is {key_id(public)}): the anchor file was edited or forged"
        )
    restore = body.get("restore")
    return (ledger, Anchor(n, seq, head, count, time, restore if isinstance(restore, dict) else None)), None


def _epochs(anchors: Sequence[Anchor]) -> list[list[Anchor]]:
    """Split at restore anchors: each restore starts a new epoch (it is its first anchor)."""
    out: list[list[Anchor]] = [[]]
    for a in anchors:
        if a.restore is not None:
            out.append([])
        out[-1].append(a)
    return [e for e in out if e] or [[]]


def check_anchored(
    chain: ChainCheck, rows: Sequence[Mapping[str, Any]], anchors: Sequence[Anchor], file: Path
) -> tuple[str | None, str]:
    """Compare an intact chain with its signed anchors: (problem or None, what was found).

    - No anchor: fine only for an empty ledger.
    - The current epoch is the anchors since the last restore anchor (all, if none). Its highest
      anchor must not lie beyond the ledger's head (truncated, emptied, an older backup put back
      without ``pipectl state restore``), and every anchor of it must match the hash of the record
      it names (rewritten, or rolled back and appended again).
    - A restore anchor is accepted only when the record it names is a ``state-restore`` record
      (hashed into the chain like any other) that states the same previous anchor as the restore
      anchor, and that previous anchor is the highest one of the epoch before: the gap between the
      old head and the restored one is explained by a record and a signature, not ignored.
    """
    if not anchors:
        if chain.count == 0:
            return None, "no anchor yet"
        return (
            f"{chain.count} record(s) but no signed anchor for this ledger in {file}: the anchors were "
            "removed or replaced, or the records were written without them"
        ), ""
    epochs = _epochs(anchors)
    current = epochs[-1]
    top = max(current, key=lambda a: a.seq)
    if top.seq > chain.head_seq:
        return _truncated(chain, top), ""
    by_seq = {int(r["seq"]): r for r in rows}
    for a in sorted(current, key=lambda a: -a.seq):
        if (by_seq.get(a.seq) or {}).get("hash") != a.head:
            return (
                f"record #{a.seq}: its hash differs from the signed anchor of {a.time} "
                f"({a.head[:16]}…): the ledger was rolled back or rewritten and appended to again"
            ), ""
    note = ""
    if current[0].restore is not None:
        problem = _restore_problem(current[0], by_seq, epochs[-2] if len(epochs) > 1 else [])
        if problem:
            return problem, ""
        note = f"; restored from a backup at #{current[0].seq} (recorded and signed)"
    after = chain.head_seq - top.seq
    tail = f"; {after} record(s) after it" if after else ""
    return None, f"signed anchor #{top.seq} of {top.time}{tail}{note}"


def _truncated(chain: ChainCheck, top: Anchor) -> str:
    has = f"{chain.count} record(s)" + (f" (head #{chain.head_seq})" if chain.count else "")
    return (
        f"the ledger has {has} but the anchor signed {top.time} says {top.count} (head #{top.seq} "
        f"{top.head[:16]}…): records were removed — truncated, emptied, or an older backup restored "
        "without `pipectl state restore`"
    )


def _restore_problem(
    r: Anchor, by_seq: Mapping[int, Mapping[str, Any]], before: Sequence[Anchor]
) -> str | None:
    row = by_seq[r.seq]
    declared = (r.restore or {}).get("previous")
    expected = max(before, key=lambda a: a.seq).brief() if before else None
    if row["kind"] != "state-restore":
        return f"record #{r.seq}: the restore anchor names it, but it is a {row['kind']!r} record"
    restored = (r.restore or {}).get("restored") or {"seq": 0, "head": None}
    prior = by_seq.get(int(restored["seq"]))
    if r.seq != int(restored["seq"]) + 1 or (prior is not None and prior["hash"] != restored["head"]):
        return f"record #{r.seq}: the restore anchor's restored head {restored} is not the record before it"
    stated = json.loads(row["record"]).get("details", {}).get("previous_anchor")
    if stated != declared:
        return f"record #{r.seq}: the restore record and the restore anchor name different previous heads"
    if declared != expected:
        return (
            f"record #{r.seq}: the restore names the previous head {declared}, but the anchors before "
            f"it end at {expected}"
        )
    return None


def kafka_publisher(spec: str, pause: float = 60.0) -> Publish:
    """Publish anchor lines to Kafka (``BOOTSTRAP/TOPIC``) with the Kafka adapter's producer,
    keyed by ledger; each line waits for its delivery (10 s). After a failure, publishing pauses
    for ``pause`` seconds (an outage must not add 10 s to every append); a later anchor covers the
    whole chain up to it, so the copy catches up with the next one sent."""
    bootstrap, _, topic = spec.rpartition("/")
    if not bootstrap or not topic:
        raise AnchorError(f"{KAFKA_ENV}={spec!r}: expected BOOTSTRAP/TOPIC")
    producer: Any = None
    resume_at = 0.0

    def publish(ledger: str, line: bytes) -> None:
        nonlocal producer, resume_at
        from controller.adapters.kafka import event_producer

        if time.monotonic() < resume_at:
            return
        errors: list[Any] = []
        try:
            if producer is None:
                producer = event_producer(bootstrap, topic)
            producer.produce(
                topic, key=ledger.encode(), value=line.rstrip(b"\n"),
                on_delivery=lambda err, _msg: errors.append(err) if err else None,
            )
            undelivered = producer.flush(10.0)
        except Exception as e:
            errors.append(e)
            undelivered = 1
        if undelivered or errors:
            resume_at = time.monotonic() + pause
            raise AnchorError(f"anchor not delivered to Kafka topic {topic}: {errors or 'timed out'}")

    return publish
