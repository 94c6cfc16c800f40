"""dev's Kafka is unreachable while the canary's gate fails: the canary is still rolled back.

Stages dev → canary (``canaryOf: prod``) → prod, as in tests/integration/test_rollback.py, with a
release without Spark jobs. 1.0.0 is promoted everywhere. 2.0.0 (another ``retention.ms``, another
DAG version) adds a gate at the canary only, ``max(n) > 1000000`` over the canary's table: NULL on
the empty table, so the canary waits in Verifying (inconclusive). Then a commit points dev's
Environment at a Kafka nobody listens on (127.0.0.1:1), and once the release reports dev's backend
unavailable the test writes a row into the canary's table: the gate fails and the canary must
still end RolledBack (GateFailed, 1.0.0 restored) although every pass meets dev's dead Kafka first;
prod stays on 1.0.0 with 1.0.0's topic config; the controller stays up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ctlkit import commit_files, stage_env_yaml
from faultkit import READABLE, RETENTION, Watch, World, topic_shape, wait
from pyhive import hive

STAGES = ["dev", "canary", "prod"]
CANARY_MAX: dict[str, Any] = {
    "name": "canary-max",
    "type": "dataQuality",
    "stages": ["canary"],
    "query": "SELECT max(n) FROM rc.counts",
    "expect": "> 1000000",
}


def test_dev_kafka_down_canary_still_rolls_back(make_world: Callable[..., World]) -> None:
    w = make_world(STAGES)
    w.commit("1.0.0", [READABLE], webhook=False)
    t0 = time.time()
    with Watch(w) as watch:
        w.ctl.start()
        w.wait_all("1.0.0", 240)
        t1 = time.time()
        print(f"1.0.0 Succeeded at dev, canary, prod {t1 - t0:.0f}s after the start")

        w.commit("2.0.0", [READABLE, CANARY_MAX], retention="7200000")
        w.wait_stage("dev", "2.0.0", "Succeeded", 180)
        w.wait_stage("canary", "2.0.0", "Verifying", 180)
        canary = w.stage("canary")
        assert {g["name"]: g["verdict"] for g in canary.get("gates") or []}.get("canary-max") == "inconclusive", canary
        t2 = time.time()
        print(f"2.0.0: dev Succeeded, canary Verifying (canary-max inconclusive) {t2 - t1:.0f}s after the commit")

        # dev's Kafka goes away: a new dev Environment with a bootstrap nobody listens on
        dead = stage_env_yaml("dev", f"it{w.uid}dev.", f"it{w.uid}dev_", w.dags_folder).replace(
            "127.0.0.1:9092", "127.0.0.1:1")
        commit_files(w.repo, {"environments/dev.yaml": dead}, "dev: Kafka unreachable")
        w.ctl.webhook()

        def dev_down() -> bool:
            r = w.ready()
            return bool(r.get("status") == "False" and r.get("reason") == "BackendUnavailable"
                        and "stage dev: " in str(r.get("message")))

        wait(dev_down, 180, "Ready=False BackendUnavailable naming stage dev", w)
        t3 = time.time()
        print(f"dev's Kafka unreachable: {w.ready()} ({t3 - t2:.0f}s)")

        # the canary's data fails its gate now
        con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
        try:
            con.cursor().execute(f"INSERT INTO {w.db('prod')}.counts__canary PARTITION (dt='2026-01-01') VALUES ('a', 5)")
        finally:
            con.close()
        w.wait_stage("canary", "2.0.0", "RolledBack", 240)
        print(f"canary RolledBack {time.time() - t3:.0f}s after its data failed the gate, dev unreachable throughout")

    canary = w.stage("canary")
    assert canary.get("reason") == "GateFailed", canary
    assert "gate canary-max failed" in canary["message"] and "restored 1.0.0" in canary["message"], canary
    prod = w.stage("prod")
    assert (prod.get("version"), prod.get("phase")) == ("1.0.0", "Succeeded"), prod
    assert topic_shape(w.topic("prod")) == (2, RETENTION)
    dev = w.stage("dev")
    assert dev.get("version") == "2.0.0", dev
    ready = w.ready()
    assert ready.get("status") == "False" and ready.get("reason") == "BackendUnavailable", ready
    assert w.ctl.alive() and w.ctl.answers()
    assert not watch.partial_promotions("2.0.0"), watch.partial_promotions("2.0.0")
    assert all(((st or {}).get("stages", {}).get("prod") or {}).get("version") != "2.0.0" for _, st in watch.seen)
