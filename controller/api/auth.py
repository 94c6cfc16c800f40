"""Who is calling: API principals (per-user tokens), a trusted proxy's identity header, and the
git webhook's own secret.

- ``Authorization: Bearer <token>`` — a token from ``pipectl token create`` (stored hashed,
  ``controller.store.tokens``). Anything else in that header (another scheme, non-ASCII bytes, an
  unknown or revoked token) is no principal: 401, never a 500.
- A trusted proxy (``--trusted-proxy ADDR --trusted-header X-Forwarded-User``): a request whose
  socket peer is one of those addresses and that carries the header is that user. The header is
  ignored from any other peer.
- The webhook (``POST /hooks/git``) is authenticated by the webhook secret only, never by a user
  token: GitHub's ``X-Hub-Signature-256`` (HMAC-SHA256 of the body, keyed with the secret),
  GitLab's ``X-Gitlab-Token`` or ``Authorization: Bearer <secret>``. An empty secret accepts
  nothing.

No token or secret is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.store.tokens import Principal, TokenStore, check_user

MAX_CREDENTIAL = 512


@dataclass(frozen=True)
class TrustedProxy:
    """Requests from these peers may name their user in ``header`` (set by the proxy, which
    authenticated them)."""

    header: str
    proxies: frozenset[str] = field(default_factory=frozenset)

    @staticmethod
    def parse(header: str, proxies: list[str]) -> TrustedProxy:
        if not header or not proxies:
            raise ValueError("--trusted-header and --trusted-proxy go together")
        addrs = set()
        for p in proxies:
            for one in p.split(","):
                if one.strip():
                    addrs.add(str(ipaddress.ip_address(one.strip())))
        return TrustedProxy(header.lower(), frozenset(addrs))

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            return str(ipaddress.ip_address(peer)) in self.proxies
        except ValueError:
            return False


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credential of ``Authorization: Bearer X``; None when absent, another scheme, not
    printable ASCII or too long (so a header of any bytes is refused, never an error)."""
    auth = headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_CREDENTIAL:
        return None
    if not (value.isascii() and value.isprintable()) or " " in value:
        return None
    return value


def principal_of(
    headers: Mapping[str, str], peer: str | None, tokens: TokenStore, trusted: TrustedProxy | None
) -> Principal | None:
    """The authenticated principal of a request, or None."""
    if trusted is not None and trusted.trusts(peer):
        name = (headers.get(trusted.header) or "").strip()
        if name:
            try:
                return Principal(user=check_user(name), via=f"proxy:{trusted.header}")
            except ValueError:
                return None
    token = bearer(headers)
    return tokens.principal(token) if token is not None else None


def _same(given: str, secret: str) -> bool:
    """Constant-time comparison that copes with any header text."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(secret.encode("utf-8")).digest(),
    )


def webhook_authorized(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """Whether a webhook request proves the webhook secret (and nothing else does)."""
    if not secret:
        return False  # an empty secret must never let every request through
    sig = headers.get("x-hub-signature-256")
    if sig is not None:
        if not sig.startswith("sha256="):
            return False
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return _same(sig.strip(), want)
    gitlab = headers.get("x-gitlab-token")
    if gitlab is not None:
        return _same(gitlab, secret)
    token = bearer(headers)
    return token is not None and _same(token, secret)
