"""Rolling back an in-place job repairs its Iceberg table exactly, on the real stack (issue #16
item 4; ``controller/engine/table_restore.py``, ``controller/rollout/table_rollback.py``).

A real ``pipectl controller run`` drives the release of ``test_rollback_inplace`` (the example
streaming job, strategy inPlace, stage prod) with its table ``format: iceberg`` (the exactly-once
Iceberg sink: one commit per batch, tagged with the version and the batch's end offsets). The
stage's Presto catalog is ``iceberg``, so the gates query the table itself.

- Known events arrive all along, in chunks of 100 (a producer process per chunk, each chunk the
  next 5 s of event time). 1.0.0 is promoted and commits them.
- 2.0.0 (defective: every row it writes carries the metric prefix ``FAILED-2.0.0-``, so the
  events it reads are counted under wrong keys) replaces the job in place and resumes on 1.0.0's
  checkpoint; it commits, its gate fails, the controller rolls it back. Events keep arriving for
  10 s after the rollback.

Then, read from the backends: the table's current snapshot descends from the snapshot the
rollback record names (table → snapshot id), which is the one current right before 2.0.0's first
commit; no row carries the marker; and Presto's per-window sum of ``samples`` over every window of
the events sent equals the count of the events sent in that window, exactly (no event lost, none
counted twice: the known good restarted from that snapshot's end offsets).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from ctlkit import ROOT, pipectl_json, topic_config, wait_for

import tests.integration.test_rollback_inplace as rip
from tests.integration.test_example_job_idempot import pe
from tests.integration.test_rollback_inplace import world  # noqa: F401 (the fixture, reused)

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
STEP_MS = 50.0
CHUNK = 100  # 5 s of event time per chunk
PAUSE = 2.0
TABLE = "host_metrics_1m"


class IcebergWorld(rip.World):
    """``test_rollback_inplace``'s release with its table ``format: iceberg`` and prod's Presto on
    the ``iceberg`` catalog."""

    def release(self, version: str) -> str:
        doc = yaml.safe_load(super().release(version))
        [table] = doc["spec"]["tables"]
        del table["partitionedBy"]
        table.update(format="iceberg", partitioning=["days(window_start)"])
        return yaml.safe_dump(doc, sort_keys=False)

    def commit(self, version: str) -> None:
        env = (self.repo / "environments" / "prod.yaml").read_text()
        (self.repo / "environments" / "prod.yaml").write_text(env.replace("catalog: hive", "catalog: iceberg"))
        super().commit(version)


@pytest.fixture
def iw(world: rip.World) -> Iterator[IcebergWorld]:  # noqa: F811 (the imported fixture)
    yield IcebergWorld(**{f.name: getattr(world, f.name) for f in dataclasses.fields(world)})


def produce(w: rip.World, chunk: int) -> list[Any]:
    """Send chunk ``chunk`` (its own seed, the next CHUNK * STEP_MS of event time); the events sent."""
    start = START + dt.timedelta(milliseconds=chunk * CHUNK * STEP_MS)
    args = ["--bootstrap-servers", rip.BOOTSTRAP, "--topic", w.topic, "--count", str(CHUNK),
            "--seed", str(40 + chunk), "--rate", "0", "--event-time-start", start.isoformat(),
            "--event-time-step-ms", str(STEP_MS)]
    r = subprocess.run([sys.executable, str(ROOT / "manifests" / "tools" / "produce_events.py"), *args],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and f'"delivered": {CHUNK}' in r.stdout, r.stderr[-2000:] + r.stdout
    return list(pe.generate_events(40 + chunk, CHUNK, 20, 4, int(start.timestamp() * 1000), STEP_MS))


class Producer(threading.Thread):
    """Known events all along (the soak waits for batches with input): a chunk every PAUSE s."""

    def __init__(self, w: rip.World) -> None:
        super().__init__(daemon=True)
        self.w, self.events, self.stop, self.error = w, list[Any](), threading.Event(), ""

    def run(self) -> None:
        chunk = 0
        while not self.stop.is_set():
            try:
                self.events += produce(self.w, chunk)
            except AssertionError as e:  # reported by finish()
                self.error = str(e)
                return
            chunk += 1
            self.stop.wait(PAUSE)

    def finish(self) -> list[Any]:
        self.stop.set()
        self.join(timeout=300)
        assert not self.error, self.error
        return self.events


def sql(presto_conn: Callable[..., Any], w: rip.World, text: str) -> list[tuple[Any, ...]]:
    cur = presto_conn(catalog="iceberg", schema=w.db).cursor()
    cur.execute(text)
    return list(cur.fetchall())


def snapshots(presto_conn: Callable[..., Any], w: rip.World) -> list[tuple[str, str | None, dict[str, str]]]:
    rows = sql(presto_conn, w, f'SELECT CAST(snapshot_id AS varchar), CAST(parent_id AS varchar), '
                               f'json_format(CAST(summary AS json)) FROM "{TABLE}$snapshots" ORDER BY committed_at')
    return [(s, p, json.loads(m)) for s, p, m in rows]


def current_snapshot(presto_conn: Callable[..., Any], w: rip.World) -> str:
    [(sid,)] = sql(presto_conn, w, f'SELECT CAST(max_by(snapshot_id, made_current_at) AS varchar) FROM "{TABLE}$history"')
    return str(sid)


def test_in_place_rollback_repairs_data(iw: IcebergWorld, presto_conn: Callable[..., Any]) -> None:
    w = iw
    w.commit("1.0.0")
    w.ctl.start()
    wait_for(lambda: topic_config(rip.BOOTSTRAP, w.topic) is not None, 120, "the stage topic", w.ctl.log)
    producer = Producer(w)
    producer.start()
    try:
        w.wait_prod("1.0.0", "Succeeded", 900)
        w.commit("2.0.0")
        w.ctl.webhook()
        w.wait_prod("2.0.0", "RolledBack", 900)
        time.sleep(10)  # events after the rollback too
    finally:
        events = producer.finish()

    audit = pipectl_json("audit", w.name, "--state", f"sqlite:///{w.state}")
    [rb] = [r for r in audit if r["kind"] == "rollback" and r["version"] == "2.0.0"]
    table = f"{w.db}.{TABLE}"
    assert rb["outcome"] == "rolledBack" and rb["details"]["tablesNotRolledBack"] == {}, rb
    back_to = rb["details"]["tablesRolledBackTo"][table]

    # the snapshot named is the one current right before 2.0.0's first commit, and 2.0.0 did commit
    snaps = snapshots(presto_conn, w)
    by_id = {s: (p, m) for s, p, m in snaps}
    first_bad = next(s for s, _, m in snaps if m.get("pipectl.version") == "2.0.0")
    assert by_id[first_bad][0] == back_to and by_id[back_to][1]["pipectl.version"] == "1.0.0", snaps

    per_window = Counter[str]()
    for r in pe.expected_aggregates(events):
        per_window[r["window_start"]] += r["samples"]
    total = sum(per_window.values())
    assert total == len(events) and total % CHUNK == 0

    def caught_up() -> bool:
        [(n,)] = sql(presto_conn, w, f'SELECT coalesce(sum(samples), 0) FROM "{TABLE}"')
        return int(n) >= total

    wait_for(caught_up, 300, f"the table counting {total} events", w.ctl.log)
    # the restored job wrote on top of the snapshot rolled back to, and 2.0.0's commits are not current
    parents = {s: p for s, p, _ in snapshots(presto_conn, w)}
    lineage, at = [], current_snapshot(presto_conn, w)
    while at is not None and at not in lineage:
        lineage.append(at)
        at = parents.get(at)
    assert back_to in lineage and first_bad not in lineage, (back_to, first_bad, lineage)

    [(marked,)] = sql(presto_conn, w, f"SELECT count(*) FROM \"{TABLE}\" WHERE metric LIKE '{rip.MARK}%'")
    assert marked == 0
    got = sql(presto_conn, w, f'SELECT CAST(window_start AS varchar), sum(samples) FROM "{TABLE}" GROUP BY 1')
    assert {ws[:19]: int(n) for ws, n in got} == dict(per_window)
    print(f"rolled back to {back_to} (2.0.0's first commit {first_bad}); {total} events in {len(per_window)} windows")
