"""A resolved secret value that does not show itself: ``repr``/``str`` print ``Secret([REDACTED])``
so a secret held by an adapter, a config object or an exception's arguments never reaches a log,
a status message or an audit record by being printed; ``reveal()`` hands the value to the one
client library that needs it.

Secrets are resolved from references (``env:VAR`` / ``file:PATH``) by
``controller.source.secrets_policy.resolve_secret``, which also registers the value with the log
redactor (``controller.obs.logging.register_secret``).
"""

from __future__ import annotations

REDACTED = "[REDACTED]"


class Secret:
    """A secret string; compare and hash like the value, print like ``Secret([REDACTED])``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")
