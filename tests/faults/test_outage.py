"""A backend goes down in the middle of a promotion and comes back.

For each of Kafka, Airflow (webserver + scheduler), the Spark Thrift Server (Hive), Presto and the
controller's own state store on PostgreSQL: a real controller promotes a release without Spark jobs
(topic, table, view, DAG, a dataQuality gate) through dev → staging → prod; once dev has Succeeded
(staging's deploy under way) the backend is stopped with ``python -m controller.devstack down
--only NAME``. While it is down:

- no partial promotion: no stage ever has the version before the stage before it Succeeded on it,
  and no stage is reported Succeeded on the version while its backend is down;
- the release is Ready=False with a named reason (BackendUnavailable…, never ReconcileError, the
  reason of an unexpected exception), and the controller process stays alive and answers;

then the backend is started again (``up --only NAME``) and the promotion completes by itself.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from faultkit import READABLE, Watch, World, outage, pg_url, wait

STAGES = ["dev", "staging", "prod"]
# the named reason of an unreachable backend (ReconcileError would mean the pass raised something
# unexpected; Failed/ApplyFailed that the outage was taken for a permanent error)
HOLD = 5.0  # seconds the backend stays down after Ready=False was seen
NAMED = {"BackendUnavailable"}
WORD = {"kafka": "kafka", "airflow": "airflow", "thrift": "hive", "presto": "presto"}  # named in the message


@pytest.fixture
def state_url(request: pytest.FixtureRequest, stack: dict[str, Any], unique_name: str) -> Iterator[str | None]:
    """A throwaway schema on the stack's PostgreSQL for the ``postgres`` case, else None (SQLite)."""
    if request.node.callspec.params["backend"] != "postgres":
        yield None
        return
    schema = f"pipectl_{unique_name}"
    url, dsn = pg_url(stack, schema)
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    yield url
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.parametrize("backend", ["kafka", "airflow", "thrift", "presto", "postgres"])
def test_backend_outage_mid_reconcile(
    backend: str, state_url: str | None, make_world: Callable[..., World]
) -> None:
    w = make_world(STAGES, url=state_url)
    w.commit("1.0.0", [READABLE], webhook=False)
    assert w.token  # created before any outage
    t0 = time.time()
    seen_down: dict[str, Any] = {}
    with Watch(w) as watch:
        w.ctl.start()
        w.wait_stage("dev", "1.0.0", "Succeeded", 180)
        before = {s for s in STAGES if w.stage(s).get("version") == "1.0.0" and w.stage(s).get("phase") == "Succeeded"}
        print(f"dev Succeeded {time.time() - t0:.0f}s after the start; {backend} goes down (Succeeded: {sorted(before)})")
        assert w.get("/metrics")[0] == 200  # the controller has verified the token before the outage
        with outage(backend) as times:
            seen_down = _while_down(w, backend, times)
        times["recovered_s"] = w.wait_all("1.0.0", 300)
    print(f"{backend}: down {times['up_started'] - times['down_at']:.0f}s (stop {times['down_s']:.0f}s, "
          f"start {times['up_s']:.0f}s); Ready=False {seen_down['after_s']:.0f}s into the outage: "
          f"{seen_down['ready']}; all stages Succeeded {times['recovered_s']:.0f}s after it was back; "
          f"test {time.time() - t0:.0f}s")

    partial = watch.partial_promotions("1.0.0")
    assert not partial, "\n".join(partial)
    early = watch.succeeded_between("1.0.0", times["down_at"], times["up_started"], before)
    assert not early, "Succeeded while the backend was down:\n" + "\n".join(early)
    assert w.ctl.alive()
    ready = w.ready()
    assert ready.get("status") == "True" and ready.get("reason") == "ReconciliationSucceeded", ready


def _while_down(w: World, backend: str, times: dict[str, float]) -> dict[str, Any]:
    """Ready=False with a named reason, the controller alive and answering, while ``backend`` is down."""
    found: dict[str, Any] = {}

    def named() -> bool:  # this outage's reason, not one the release had before (AwaitingBackend…)
        r = w.ready()
        if (r.get("status") == "False" and r.get("reason") == "BackendUnavailable"
                and WORD[backend] in str(r.get("message")).lower()):
            found["ready"] = {k: r.get(k) for k in ("status", "reason", "message")}
            return True
        return False

    if backend == "postgres":
        found.update(_store_down(w))
    else:
        wait(named, 120, f"Ready=False with a named reason while {backend} is down", w)
    found["after_s"] = time.time() - times["down_at"]
    ready = found["ready"]
    assert ready["reason"] in NAMED, ready
    # the outage lasts a little longer: passes keep failing, nothing is promoted, nothing crashes
    hold_until = time.time() + HOLD
    while time.time() < hold_until:
        assert w.ctl.alive(), w.tail()
        time.sleep(1)
    assert w.ctl.answers(), "the controller's API does not answer"
    return found


def _store_down(w: World) -> dict[str, Any]:
    """The state store is down, so the release's status cannot be read from it: Ready=False is
    looked for where it can still be seen. /healthz answers 503 with the store's error, /metrics
    (served to a principal the controller verified before the outage) has
    ``pipectl_backend_up{backend="state"} 0``, and the API answers the release with 503
    BackendUnavailable naming the state store. (The stack's PostgreSQL is also the Hive metastore's:
    a pass that was calling Hive waits on it, up to the adapter's socket timeout, so the release's
    own BackendUnavailable event may come later; it is reported when it is there.)"""

    def anonymous_health() -> int:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{w.ctl.port}/healthz", timeout=10)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return -1
        return 200

    wait(lambda: anonymous_health() == 503, 60, "/healthz to answer 503 while the state store is down", w)
    code, health = w.get("/healthz")
    assert code in (200, 503) and "state store unavailable" in json.loads(health)["error"], (code, health)
    code, text = w.get("/metrics")
    assert code == 200, (code, text[:300])
    assert 'pipectl_backend_up{backend="state"} 0.0' in text, [ln for ln in text.splitlines() if "backend_up" in ln]
    code, body = w.get(f"/api/v1/releases/{w.name}")
    assert code == 503, (code, body)
    answer = json.loads(body)
    assert answer["reason"] == "BackendUnavailable" and "state store unavailable" in answer["error"], answer
    events = w.tmp / ".pipectl" / "events" / "events.jsonl"
    mine = [e for e in map(json.loads, events.read_text().splitlines())
            if e.get("release") == w.name and e.get("reason") == "BackendUnavailable"] if events.exists() else []
    print(f"release {w.name}: {len(mine)} BackendUnavailable event(s) so far"
          + (f", the last: {mine[-1].get('message')}" if mine else ""))
    return {"ready": {"status": "False", "reason": answer["reason"], "message": answer["error"]}}
