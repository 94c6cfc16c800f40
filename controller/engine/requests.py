"""Operations people ask the running controller for, run by the release's own worker.

``RollbackRequests`` is a thread-safe slot per release: the API thread submits a manual rollback
(``POST /api/v1/releases/NAME/rollback``), and the worker that holds the release takes it at the
start of the release's pass (``Controller.process``), so a rollback never runs beside a pass of the
same release and always under the controller's leader lock. One request per release may wait or
run at a time (a second one is refused, naming the first); finished requests are kept, the latest
``keep`` of them, for ``GET /api/v1/releases/NAME/rollback/ID``.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class RequestConflict(Exception):
    """A request for the release is waiting or running already."""


@dataclass
class RollbackRequest:
    release: str
    stage: str
    to_version: str | None
    actor: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: str = QUEUED
    message: str = ""
    queued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "release": self.release,
            "stage": self.stage,
            "toVersion": self.to_version,
            "actor": self.actor,
            "state": self.state,
            "message": self.message,
            "queuedAt": self.queued_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
        }


class RollbackRequests:
    def __init__(self, keep: int = 100):
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, RollbackRequest] = OrderedDict()
        self._open: dict[str, str] = {}
        """release → id of its queued or running request."""
        self._keep = keep

    def submit(self, release: str, stage: str, to_version: str | None, actor: str) -> RollbackRequest:
        with self._lock:
            open_id = self._open.get(release)
            if open_id is not None:
                other = self._by_id[open_id]
                raise RequestConflict(
                    f"a rollback of {release} at {other.stage} by {other.actor} is {other.state} "
                    f"(request {other.id})"
                )
            req = RollbackRequest(release, stage, to_version, actor)
            self._by_id[req.id] = req
            self._open[release] = req.id
            self._trim()
            return dataclasses.replace(req)

    def take(self, release: str) -> RollbackRequest | None:
        """The release's queued request, now running (its worker calls this), or None."""
        with self._lock:
            open_id = self._open.get(release)
            req = self._by_id.get(open_id) if open_id else None
            if req is None or req.state != QUEUED:
                return None
            req.state = RUNNING
            return dataclasses.replace(req)

    def finish(self, request_id: str, ok: bool, message: str) -> None:
        with self._lock:
            req = self._by_id.get(request_id)
            if req is None:
                return
            req.state, req.message, req.finished_at = (DONE if ok else FAILED), message, datetime.now(UTC)
            if self._open.get(req.release) == request_id:
                del self._open[req.release]

    def pending(self) -> list[str]:
        """Releases with a queued request."""
        with self._lock:
            return [r for r, i in self._open.items() if self._by_id[i].state == QUEUED]

    def get(self, release: str, request_id: str) -> RollbackRequest | None:
        with self._lock:
            req = self._by_id.get(request_id)
            return dataclasses.replace(req) if req is not None and req.release == release else None

    def _trim(self) -> None:
        while len(self._by_id) > self._keep:
            oldest = next((i for i, r in self._by_id.items() if r.state in (DONE, FAILED)), None)
            if oldest is None:
                return
            del self._by_id[oldest]
