"""pipectl's own error tree. Backend SDK errors are wrapped into these, raised ``from`` the original.

PipectlError
├── ManifestError            a manifest is invalid (carries every Problem found)
├── PlanRefusedError         the plan holds refused changes
├── ConfigurationError       an environment or flag cannot work as written (a person must fix it)
├── BackendError             a backend call failed
│   ├── TransientBackendError   retried with backoff
│   │   └── NotReadyYet         the change was made; its effect is not visible yet (requeue, no error)
│   └── PermanentBackendError   reported, not retried
├── ConflictError            another instance holds the lock / a run exists already
└── NotFoundError            a release, stage or record does not exist

Every error has a class (``error_class``): transient (a later attempt may succeed), terminal (the
same attempt fails again) or configuration (a person must change a manifest, flag or secret).
Retry decisions read the class, never the message text.
"""

from __future__ import annotations

import sqlite3
import tarfile
from dataclasses import dataclass
from enum import StrEnum

from controller.model.reasons import Reason


class ErrorClass(StrEnum):
    TRANSIENT = "transient"
    TERMINAL = "terminal"
    CONFIGURATION = "configuration"


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem, reported as ``file:line: field.path: message``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return f"{loc}: {self.path}: {self.message}" if self.path else f"{loc}: {self.message}"


class PipectlError(Exception):
    """Base of every error pipectl raises on purpose."""


class ManifestError(PipectlError):
    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanRefusedError(PipectlError):
    pass


class BackendError(PipectlError):
    def __init__(self, backend: str, message: str):
        self.backend = backend
        super().__init__(f"{backend}: {message}")


class ConfigurationError(PipectlError):
    """An environment, flag or secret reference cannot work as written."""


class TransientBackendError(BackendError):
    """A later attempt may succeed; ``reason`` names why this one could not."""

    def __init__(
        self,
        backend: str,
        message: str,
        reason: Reason = Reason.BACKEND_UNAVAILABLE,
        retry_after: float | None = None,
    ):
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(backend, message)


class NotReadyYet(TransientBackendError):
    """The change was made and the backend does not report it yet: look again after ``retry_after``
    seconds (a requeue, not a failure). Raised instead of sleeping inside a pass."""

    def __init__(self, backend: str, message: str, reason: Reason, retry_after: float = 2.0):
        super().__init__(backend, message, reason, retry_after)


class PermanentBackendError(BackendError):
    pass


class ConflictError(PipectlError):
    pass


class NotFoundError(PipectlError):
    pass


_TRANSIENT_BUILTINS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    sqlite3.OperationalError,
)
_CONFIG_BUILTINS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    tarfile.TarError,
    UnicodeDecodeError,
)


def error_class(e: BaseException) -> ErrorClass:
    """The class of any exception, pipectl's or not (unknown exceptions are terminal)."""
    if isinstance(e, TransientBackendError):
        return ErrorClass.TRANSIENT
    if isinstance(e, ConfigurationError | ManifestError):
        return ErrorClass.CONFIGURATION
    if isinstance(e, PipectlError):
        return ErrorClass.TERMINAL
    if isinstance(e, _TRANSIENT_BUILTINS) or type(e).__name__ in ("OperationalError", "InterfaceError"):
        return ErrorClass.TRANSIENT  # network and database drivers (psycopg, SQLAlchemy) name them so
    if isinstance(e, _CONFIG_BUILTINS):
        return ErrorClass.CONFIGURATION
    return ErrorClass.TERMINAL
