"""Rollback MTTR and canary defect detection, read from the state store of a finished `make demo`.

The demo commits a defective version (its job drops 25% of events); the canary comparison catches
it and pipectl rolls the canary back. This script reads that run's audit ledger and events
(`.pipectl/state.db` by default) and prints:

- canary detection time: canary deploy of the defective version → the failing gate verdict, in
  seconds and in closed 1-minute windows compared (the gate's evidence);
- rollback MTTR at canary: failing verdict → the rollback record's end (failed version stopped,
  last good version converged) and → the stage's status RolledBack. Prod's serving view never
  moved: a canary runs beside prod, so the dashboards saw no change at all;
- for the earlier good version: canary deploy → passing verdict, for comparison.

``canary_failure`` (the records of a release's last canary rollback) is shared with
``bench/bench_canary_detection.py``. It measures nothing itself and needs no stack; run `make demo`
first. Usage:
    .venv/bin/python bench/bench_rollback.py [STATE_URL] [RELEASE]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.audit.ledger import Ledger
from controller.store.db import Store


def ts(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))


class NotFound(Exception):
    """The state store holds no canary failure to measure (the message says what is missing)."""


@dataclass(frozen=True)
class CanaryFailure:
    """A release's last canary rollback, read from its audit ledger."""

    records: list[dict[str, Any]]
    rollback: dict[str, Any]
    deploy: dict[str, Any]
    """The canary ``apply`` record of the defective version (the last one before the verdict)."""
    failed: dict[str, Any]
    """The first failing canary ``gate`` record of the defective version."""
    gate: dict[str, Any]
    """That record's ``canaryComparison`` verdict (name, message, evidence)."""


def canary_failure(store: Store, release: str) -> CanaryFailure:
    """The last canary rollback of ``release`` and the deploy and failing verdict it came from;
    :class:`NotFound` when the ledger has none of them."""
    recs = Ledger(store).records(release)
    if not recs:
        raise NotFound(f"no audit records for {release}")
    rollbacks = [r for r in recs if r["kind"] == "rollback" and r.get("stage") == "canary"]
    if not rollbacks:
        raise NotFound(f"{release} has no canary rollback (did the run finish?)")
    bad = rollbacks[-1]["version"]
    fails = [
        r
        for r in recs
        if r["kind"] == "gate"
        and r.get("stage") == "canary"
        and r["version"] == bad
        and r["outcome"] == "failed"
    ]
    gates = [
        g for r in fails[:1] for g in r["gates"] if g["type"] == "canaryComparison" and g["verdict"] == "fail"
    ]
    if not gates:
        raise NotFound(f"{release} {bad}: no failing canaryComparison verdict at canary")
    deploys = [
        r
        for r in recs
        if r["kind"] == "apply"
        and r.get("stage") == "canary"
        and r["version"] == bad
        and ts(r["started_at"]) <= ts(fails[0]["finished_at"])
    ]
    if not deploys:
        raise NotFound(f"{release} {bad}: no canary deploy before its failing verdict")
    return CanaryFailure(recs, rollbacks[-1], deploys[-1], fails[0], gates[0])


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///.pipectl/state.db"
    release = sys.argv[2] if len(sys.argv) > 2 else "host-metrics"
    store = Store(url)
    try:
        found = canary_failure(store, release)
    except NotFound as e:
        print(f"skipped: {e} in {url}: run `make demo` first", file=sys.stderr)
        return 0
    recs, rb, failed, canary_gate = found.records, found.rollback, found.failed, found.gate
    bad, deploy = rb["version"], found.deploy
    ev = canary_gate.get("evidence", {})
    tables = ev.get("tables") or [{}]
    windows = tables[0].get("windows_compared") or tables[0].get("windows") or tables[0].get("common_windows")
    events = store.recent_events(release, limit=500)
    rolled = next(
        (
            e
            for e in events
            if e.get("stage") == "canary" and e["reason"] == "GateFailed" and "restored" in e["message"]
        ),
        None,
    )
    good_pass = [
        r for r in recs if r["kind"] == "gate" and r.get("stage") == "canary" and r["outcome"] == "passed"
    ]

    figures: dict[str, Any] = {
        "defective_version": bad,
        "canary_detection_seconds": (ts(failed["finished_at"]) - ts(deploy["started_at"])).total_seconds(),
        "canary_windows_compared": windows,
        "canary_gate_message": canary_gate["message"],
        "mttr_serving_restored_seconds": (ts(rb["finished_at"]) - ts(failed["finished_at"])).total_seconds(),
        "mttr_status_rolled_back_seconds": (
            (ts(rolled["ts"]) - ts(failed["finished_at"])).total_seconds() if rolled else None
        ),
    }
    if good_pass:
        first = good_pass[0]
        gdeploy = next(
            (
                r
                for r in recs
                if r["kind"] == "apply" and r.get("stage") == "canary" and r["version"] == first["version"]
            ),
            None,
        )
        if gdeploy:
            figures["good_version_canary_verdict_seconds"] = (
                ts(first["finished_at"]) - ts(gdeploy["started_at"])
            ).total_seconds()
    print(f"{'figure':40} value")
    for k, v in figures.items():
        print(f"{k:40} {v}")
    print(json.dumps({"bench": "rollback", "figures": figures}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
