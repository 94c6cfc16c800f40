"""API principals: per-user tokens, stored hashed.

A token is ``pct_`` + 32 random bytes (urlsafe base64). Only its sha256 is stored; the token
itself is shown once, by ``pipectl token create``, and never stored or logged. A token names one
principal: a user and the groups it belongs to (environment approvers may name either). Revoked
tokens stay listed (``pipectl token list``) so the audit trail can still name them.

The table lives in the state store's metadata (``controller.store.tables``); it is created on first use
so an existing store gains it without a migration.

While the store cannot be reached, a token this process verified in the last ``RECENT_SECONDS`` is
still accepted (nothing can be revoked meanwhile: revoking writes to the store), so Prometheus keeps
scraping /metrics and sees ``pipectl_backend_up{backend="state"} 0`` instead of a dead target.
Every lookup asks the store first; a token the store says is unknown or revoked is forgotten.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, DateTime, String, Table, Text, func, select, update

from controller.model.errors import ErrorClass, error_class
from controller.store.db import Store, _aware, utcnow
from controller.store.tables import metadata

TOKEN_PREFIX = "pct_"  # noqa: S105 - a prefix, not a secret
_USER = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")
_GROUP = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
RECENT_SECONDS = 300.0
"""How long a verified token is accepted while the state store cannot be reached."""

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("groups", Text, nullable=False),  # JSON list
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128)),
    Column("revoked_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Principal:
    """Who a request is: a user and its groups, and how it was established."""

    user: str
    groups: tuple[str, ...] = field(default_factory=tuple)
    via: str = "token"
    """``token:<id>``, ``proxy:<header>`` or ``local`` (an operator on the controller host)."""

    def describe(self) -> str:
        return f"{self.user} ({self.via})"


def check_user(user: str) -> str:
    if not _USER.fullmatch(user):
        raise ValueError(f"invalid user {user!r}: letters, digits and ._@- (at most 128)")
    return user


def check_groups(groups: list[str]) -> list[str]:
    for g in groups:
        if not _GROUP.fullmatch(g):
            raise ValueError(f"invalid group {g!r}: letters, digits and ._- (at most 64)")
    return sorted(set(groups))


def token_digest(token: str) -> str:
    """sha256 hex of a presented token; copes with any text (a header may hold anything)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """Create, list, revoke and look up API tokens in the state store."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.clock = clock
        self._recent: dict[str, tuple[Principal, float]] = {}  # token sha256 -> (principal, verified at)
        self._lock = threading.Lock()
        api_tokens.create(store.engine, checkfirst=True)

    def create(
        self, user: str, groups: list[str] | None = None, created_by: str | None = None
    ) -> tuple[str, str]:
        """A new token for ``user``: returns (id, token). The token is not kept anywhere."""
        check_user(user)
        gs = check_groups(list(groups or []))
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = "tok_" + secrets.token_hex(6)
        with self.store.tx() as c:
            c.execute(
                api_tokens.insert().values(
                    id=tid,
                    user=user,
                    groups=json.dumps(gs),
                    token_sha256=token_digest(token),
                    created_at=utcnow(),
                    created_by=created_by,
                )
            )
        return tid, token

    def list(self) -> list[dict[str, Any]]:
        """Every token (never its secret): id, user, groups, created_at, created_by, revoked_at."""
        q = select(api_tokens).order_by(api_tokens.c.created_at)
        with self.store.tx() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        for r in rows:
            del r["token_sha256"]
            r["groups"] = json.loads(r["groups"])
            r["created_at"], r["revoked_at"] = _aware(r["created_at"]), _aware(r["revoked_at"])
        return rows

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id; False when there is no such (unrevoked) token."""
        with self.store.tx() as c:
            n = c.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ).rowcount
        return bool(n)

    def active_count(self) -> int:
        with self.store.tx() as c:
            q = select(func.count()).select_from(api_tokens).where(api_tokens.c.revoked_at.is_(None))
            return int(c.execute(q).scalar_one())

    def principal(self, token: str) -> Principal | None:
        """The principal of a presented token, or None (unknown, revoked, or not a token at all)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            return None
        digest = token_digest(token)
        q = select(api_tokens.c.id, api_tokens.c.user, api_tokens.c.groups, api_tokens.c.revoked_at).where(
            api_tokens.c.token_sha256 == digest
        )
        try:
            with self.store.tx() as c:
                row = c.execute(q).first()
        except Exception as e:  # the store is down: a token verified a moment ago is still good
            with self._lock:
                hit = self._recent.get(digest)
            recent = hit is not None and self.clock() - hit[1] <= RECENT_SECONDS
            if hit is None or not recent or error_class(e) is not ErrorClass.TRANSIENT:
                raise
            return hit[0]
        with self._lock:
            if row is None or row.revoked_at is not None:
                self._recent.pop(digest, None)
                return None
            who = Principal(user=row.user, groups=tuple(json.loads(row.groups)), via=f"token:{row.id}")
            self._recent[digest] = (who, self.clock())
            return who
