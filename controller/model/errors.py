"""pipectl's own error tree. Backend SDK errors are wrapped into these, raised ``from`` the original.

PipectlError
├── ManifestError            a manifest is invalid (carries every Problem found)
├── PlanRefusedError         the plan holds refused changes
├── BackendError             a backend call failed
│   ├── TransientBackendError   retried with backoff
│   └── PermanentBackendError   reported, not retried
├── ConflictError            another instance holds the lock / a run exists already
└── NotFoundError            a release, stage or record does not exist
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.model.reasons import Reason


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


class TransientBackendError(BackendError):
    """A later attempt may succeed; ``reason`` names why this one could not."""

    def __init__(self, backend: str, message: str, reason: Reason = Reason.BACKEND_UNAVAILABLE):
        self.reason = reason
        super().__init__(backend, message)


class PermanentBackendError(BackendError):
    pass


class ConflictError(PipectlError):
    pass


class NotFoundError(PipectlError):
    pass
