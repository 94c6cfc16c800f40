"""A real ``GateData`` for gate tests on the stack: queries go through the engine's Presto adapter
(as ``StageGateData``'s do); these tests deploy no jobs, schemas or approvals."""

from __future__ import annotations

from typing import Any

from controller.adapters.presto import PrestoClient
from controller.rollout.gates import JobNotFound, ProgressView


class NoJobsGateData:
    """What a gate test without jobs, topics, schemas or approvals answers; ``query`` is the test's."""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def job_progress(self, job_name: str) -> ProgressView | None:
        raise JobNotFound(job_name)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {}

    def live_schema(self, release: str, schema: str) -> list[str]:
        return []

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> str | None:
        return None


class PrestoData(NoJobsGateData):
    def __init__(self, client: PrestoClient):
        self.client = client

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.client.query(sql, op="gate")
