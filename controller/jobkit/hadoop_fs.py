"""Hadoop filesystem access for the jobkit sink, through Spark's JVM (so HDFS, S3 and local files
all work), and what Spark recorded for a batch in a checkpoint's offset log: its watermark and
its source's end offsets.

Imports only pyspark and the standard library: it ships with the job, not the controller.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import SparkSession

from controller.jobkit.checks import SinkError


class HadoopFs:
    """Paths, listings, reads and atomic writes on the filesystem of a location."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        assert self._jvm is not None

    def path(self, location: str, *children: str) -> Any:
        p = self._jvm.org.apache.hadoop.fs.Path(location)  # type: ignore[union-attr]
        for c in children:
            p = self._jvm.org.apache.hadoop.fs.Path(p, c)  # type: ignore[union-attr]
        return p

    def fs(self, p: Any) -> Any:
        return p.getFileSystem(self._conf)

    def exists(self, p: Any) -> bool:
        return bool(self.fs(p).exists(p))

    def list_dirs(self, p: Any) -> list[str]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [s.getPath().getName() for s in fs.listStatus(p) if s.isDirectory()]

    def list_dirs_mtime(self, p: Any) -> list[tuple[str, int]]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [
            (s.getPath().getName(), int(s.getModificationTime())) for s in fs.listStatus(p) if s.isDirectory()
        ]

    def list_names(self, p: Any) -> list[str]:
        fs = self.fs(p)
        if not fs.exists(p):
            return []
        return [s.getPath().getName() for s in fs.listStatus(p)]

    def delete(self, p: Any) -> None:
        self.fs(p).delete(p, True)

    def read_text(self, p: Any) -> str | None:
        fs = self.fs(p)
        if not fs.exists(p):
            return None
        stream = fs.open(p)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))  # type: ignore[union-attr]
        finally:
            stream.close()

    def write_text_atomic(self, p: Any, text: str) -> None:
        fs = self.fs(p)
        tmp = self._jvm.org.apache.hadoop.fs.Path(p.getParent(), f".{p.getName()}.tmp")  # type: ignore[union-attr]
        out = fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if fs.exists(p):
            fs.delete(p, False)
        if not fs.rename(tmp, p):
            raise SinkError(f"could not rename {tmp} to {p}")


def batch_watermark_ms(spark: SparkSession, checkpoint: str, batch_id: int) -> int | None:
    """The event-time watermark Spark recorded for ``batch_id`` in its offset log.

    Spark writes ``<checkpoint>/offsets/<batchId>`` before running the batch and re-uses it on
    replay, so filtering late rows with this value is deterministic. ``None`` when unknown.
    """
    fs = HadoopFs(spark)
    text = fs.read_text(fs.path(checkpoint, "offsets", str(int(batch_id))))
    if not text:
        return None
    lines = text.splitlines()
    if len(lines) < 2:
        return None
    try:
        meta = json.loads(lines[1])
        return int(meta.get("batchWatermarkMs", 0))
    except (ValueError, TypeError, AttributeError):
        return None


def source_end_offsets(log_text: str | None) -> str | None:
    """The end offsets of a batch's one Kafka source, from its offset log file's text, as Spark's
    ``startingOffsets`` JSON (``{"topic": {"0": 42}}``, keys sorted, no spaces): a query started
    from them reads exactly the events after the batch.

    The file is ``v1``, a metadata line, then one line per source (``-`` for a source with no
    offset yet). None unless there is exactly one source with topic → partition → offset.
    """
    lines = [ln for ln in (log_text or "").splitlines()[2:] if ln.strip()]
    if len(lines) != 1:
        return None
    try:
        parsed = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    out: dict[str, dict[str, int]] = {}
    for topic, parts in parsed.items():
        if not isinstance(parts, dict) or not parts:
            return None
        if not all(str(p).isdigit() and type(o) is int and o >= 0 for p, o in parts.items()):
            return None
        out[str(topic)] = {str(p): o for p, o in parts.items()}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def batch_end_offsets(spark: SparkSession, checkpoint: str, batch_id: int) -> str | None:
    """``source_end_offsets`` of ``<checkpoint>/offsets/<batchId>`` (written before the batch runs,
    re-used on replay); None when the file is missing or not one Kafka source's offsets."""
    fs = HadoopFs(spark)
    return source_end_offsets(fs.read_text(fs.path(checkpoint, "offsets", str(int(batch_id)))))
