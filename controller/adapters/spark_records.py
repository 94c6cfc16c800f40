"""The Spark adapter's records: a job's registry entry (``JobRecord``), what a runner sees of it
now (``JobState``), the progress a job reports (``JobProgress``), and the ``JobRunner`` interface
the adapter drives (``controller.adapters.spark_runner.LocalRunner`` is the local one).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from controller.model.errors import PermanentBackendError
from controller.plan.resources import Owner, StreamingJobResource

BACKEND = "spark"
JOB_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


class JobRecord(BaseModel):
    """One registry entry: what was started, as what process, and where its files are."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    entrypoint: str
    entrypoint_digest: str
    args: list[str] = Field(description="The desired args, without the runner's additions.")
    conf: dict[str, str]
    checkpoint: str = Field(description="The declared checkpoint.")
    effective_checkpoint: str = Field(description="The directory the job actually runs on.")
    strategy: str
    owner: Owner | None = None
    argv: list[str]
    pid: int | None = None
    start_ticks: int | None = Field(default=None, description="/proc/<pid>/stat starttime (clock ticks).")
    boot_id: str | None = None
    started_at: datetime
    stopped_at: datetime | None = None
    submission_id: str | None = Field(
        default=None, description="The standalone master's driver id (``StandaloneRunner``) or the "
        "SparkApplication (``SparkOperatorRunner``); no pid then."
    )
    status_file: str
    stop_file: str
    log_file: str

    def resource(self, *, running: bool) -> StreamingJobResource:
        """The job as an observed resource."""
        return StreamingJobResource(
            name=self.name, owner=self.owner, version=self.version, entrypoint=self.entrypoint,
            entrypoint_digest=self.entrypoint_digest, args=list(self.args), conf=dict(self.conf),
            checkpoint=self.checkpoint, running=running, strategy=self.strategy,
        )


class JobState(BaseModel):
    """A registry entry plus what the runner saw now: is the process alive, its last progress."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    record: JobRecord
    alive: bool
    progress: dict[str, Any] | None = None
    backend_state: str | None = Field(
        default=None, description="The cluster manager's own state of the job when it has one "
        "(SparkOperatorRunner: status.applicationState.state, \"\" before the operator saw it)."
    )


class SourceProgress(BaseModel):
    """One source of a job's last progress (offsets and rates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str
    end_offsets: dict[str, dict[int, int]] = Field(
        default_factory=dict, description="topic → partition → offset processed up to (Kafka sources)."
    )
    latest_offsets: dict[str, dict[int, int]] = Field(
        default_factory=dict, description="topic → partition → latest offset seen at the batch."
    )
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None


class JobProgress(BaseModel):
    """The last StreamingQueryProgress a job reported (consumer lag is computed elsewhere)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str | None
    query_id: str
    run_id: str
    batch_id: int
    num_input_rows: int | None = None
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    batch_duration_ms: int | None = Field(default=None, description="durationMs.triggerExecution")
    watermark: str | None = None
    timestamp: datetime
    sources: list[SourceProgress] = Field(default_factory=list)
    undecodable_records: int | None = Field(
        default=None, description="Records the job could not decode since it started "
        "(status file's pipectl.undecodableRecords; None when the job does not report it)."
    )

    @property
    def end_offsets(self) -> dict[str, dict[int, int]]:
        """All Kafka sources' processed offsets merged: topic → partition → offset."""
        out: dict[str, dict[int, int]] = {}
        for s in self.sources:
            for topic, parts in s.end_offsets.items():
                out.setdefault(topic, {}).update(parts)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobProgress:
        """Read a StreamingQueryProgress as JSON (the job's status file)."""
        sources = [
            SourceProgress(
                description=str(s.get("description", "")),
                end_offsets=_kafka_offsets(s.get("endOffset")),
                latest_offsets=_kafka_offsets(s.get("latestOffset")),
                input_rows_per_second=_float(s.get("inputRowsPerSecond")),
                processed_rows_per_second=_float(s.get("processedRowsPerSecond")),
            )
            for s in data.get("sources") or []
        ]
        duration = (data.get("durationMs") or {}).get("triggerExecution")
        undecodable = (data.get("pipectl") or {}).get("undecodableRecords")
        return cls(
            name=data.get("name"),
            query_id=str(data["id"]),
            run_id=str(data["runId"]),
            batch_id=int(data["batchId"]),
            num_input_rows=data.get("numInputRows"),
            input_rows_per_second=_float(data.get("inputRowsPerSecond")),
            processed_rows_per_second=_float(data.get("processedRowsPerSecond")),
            batch_duration_ms=int(duration) if duration is not None else None,
            watermark=(data.get("eventTime") or {}).get("watermark"),
            timestamp=datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00")),
            sources=sources,
            undecodable_records=int(undecodable) if undecodable is not None else None,
        )


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _kafka_offsets(v: Any) -> dict[str, dict[int, int]]:
    """Kafka source offsets (``{"topic": {"0": 12}}``, possibly as a JSON string); {} for other sources."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    if not isinstance(v, dict):
        return {}
    out: dict[str, dict[int, int]] = {}
    for topic, parts in v.items():
        if not isinstance(parts, dict):
            return {}
        try:
            out[str(topic)] = {int(p): int(o) for p, o in parts.items()}
        except (TypeError, ValueError):
            return {}
    return out


class JobRunner(Protocol):
    """Where streaming jobs run. Every method is idempotent on the job's current state."""

    def start(self, job: StreamingJobResource) -> JobState:
        """Start the job (it must not be running) and record it."""
        ...

    def stop(self, name: str, timeout: float) -> bool:
        """Stop after the current batch (escalating after ``timeout`` s); False if it was not running."""
        ...

    def request_stop(self, name: str, timeout: float) -> bool:
        """Non-blocking stop: ask (and escalate over calls); True once the job no longer runs."""
        ...

    def kill(self, name: str) -> bool:
        """Kill at once (SIGKILL); False if it was not running."""
        ...

    def list(self, names: Sequence[str] | None = None) -> dict[str, JobState]:
        """Registered jobs (the named ones, or all) with liveness and last progress, in one pass."""
        ...

    def forget(self, name: str) -> bool:
        """Remove a stopped job's registry entry (its checkpoint stays); False if there was none."""
        ...


def check_job_name(name: str) -> str:
    """``name`` if it is a valid job name (it names registry files), else a PermanentBackendError."""
    if not JOB_NAME_RE.fullmatch(name):
        raise PermanentBackendError(BACKEND, f"invalid job name {name!r}: allowed are [A-Za-z0-9._-]")
    return name

