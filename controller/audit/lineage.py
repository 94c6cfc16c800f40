"""OpenLineage export: each audit record becomes a RunEvent (file transport by default).

Set ``OPENLINEAGE_URL`` (or an openlineage.yml) to send to a lineage server instead; the client
library's own configuration rules apply then.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.file import FileConfig, FileTransport

from controller.audit.ledger import AuditRecord

NAMESPACE = "pipectl"
PRODUCER = "https://pipectl.dev/controller"


def _dataset_ns(name: str) -> tuple[str, str]:
    """Dataset names in records are ``kafka:topic`` or ``hive:db.table``; map them to OL namespaces."""
    scheme, _, rest = name.partition(":")
    return (f"{scheme}://pipectl", rest) if rest else ("pipectl", name)


class OpenLineageSink:
    def __init__(self, path: Path | None = None):
        if os.environ.get("OPENLINEAGE_URL"):
            self.client = OpenLineageClient()
        else:
            path = path or Path(".pipectl") / "openlineage.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.client = OpenLineageClient(
                transport=FileTransport(FileConfig(log_file_path=str(path), append=True))
            )

    def emit(self, rec: AuditRecord) -> None:
        state = {
            "succeeded": RunState.COMPLETE,
            "failed": RunState.FAIL,
            "rolledBack": RunState.FAIL,
        }.get(rec.outcome, RunState.COMPLETE)
        run_id = str(uuid.UUID(hex=rec.record_id)) if len(rec.record_id) == 32 else str(uuid.uuid4())
        inputs = [InputDataset(namespace=ns, name=n) for ns, n in map(_dataset_ns, rec.lineage.inputs)]
        outputs = [OutputDataset(namespace=ns, name=n) for ns, n in map(_dataset_ns, rec.lineage.outputs)]
        event = RunEvent(
            eventType=state,
            eventTime=rec.finished_at.isoformat(),
            run=Run(runId=run_id),
            job=Job(namespace=NAMESPACE, name=f"{rec.release}.{rec.stage or 'all'}.{rec.kind}"),
            producer=PRODUCER,
            inputs=inputs,
            outputs=outputs,
        )
        self.client.emit(event)
