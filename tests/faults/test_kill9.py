"""kill -9 of a real ``pipectl controller run`` at 20 seeded random points of a promotion.

The release has a topic, a table, a serving view and an Airflow DAG (no Spark job) and a
dataQuality gate Presto evaluates at every stage; stages dev → staging → prod, all automatic. The
controller is killed with SIGKILL (its whole process group) after delays drawn from
``random.Random(SEED)`` and restarted at once each time; then it is left to converge. When the
machine is quicker than the kills and 1.0.0 is everywhere before the last one, the next version
(1.0.1, … with another ``retention.ms`` and DAG version) is committed, so every kill lands on a
promotion in progress.

Checked afterwards:
- every stage Succeeded on the last version, and no stage ever had a version before the stage
  before it had Succeeded on it;
- no action was applied twice: the journal has at most one ``done`` per (plan digest, action id),
  and its full history (every state a journal row took, recorded by SQLite triggers, since the
  executor overwrites a row on each attempt) shows no action run again after it was ``done``;
- the backends agree: each stage's topic exists once with the declared partitions and
  ``retention.ms``, its table and view exist once, one DAG file (+ its sidecar) per stage;
- ``pipectl audit verify`` passes (hash chain and signed anchors written through the kills).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from faultkit import (
    READABLE,
    RETENTION,
    Watch,
    World,
    audit_verify,
    dag_files,
    double_applies,
    hive_relations,
    install_journal_log,
    journal_log,
    topic_shape,
)

SEED = int(os.environ.get("PIPECTL_FAULT_SEED", "20261205"))
KILLS = int(os.environ.get("PIPECTL_FAULT_KILLS", "20"))
# Seconds the controller lives between a (re)start (its /healthz answering) and its kill. A promotion
# of this release takes 20-30 s of controller time on the project's machine uninterrupted (a restart
# costs 1.5-5 s, and the pass it interrupted starts over): 20 lives of 2.25 s on average spread the
# kills over it (and over the next versions' when the machine is quick).
MIN_LIFE, MAX_LIFE = 0.5, 4.0
STAGES = ["dev", "staging", "prod"]


def progress(w: World) -> str:
    """Stage phases (written at the end of a pass) and the journal's rows per stage and state."""
    st = w.status() or {}
    by = st.get("stages") or {}
    rows = w.store.journal_rows(w.name)
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['stage']}:{r['state']}"
        counts[key] = counts.get(key, 0) + 1
    return (" ".join(f"{s}={(by.get(s) or {}).get('phase', '-')}" for s in STAGES) + " | journal "
            + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))


def converged(w: World, version: str) -> bool:
    by = (w.status() or {}).get("stages") or {}
    return all((by.get(s) or {}).get("version") == version and (by.get(s) or {}).get("phase") == "Succeeded"
               for s in STAGES)


def test_kill9_at_seeded_points(make_world: Callable[..., World]) -> None:
    w = make_world(STAGES)
    state = w.tmp / "state" / "state.db"
    install_journal_log(state)
    versions = [("1.0.0", RETENTION)]
    w.commit("1.0.0", [READABLE], webhook=False)
    rng = random.Random(SEED)
    lives = [rng.uniform(MIN_LIFE, MAX_LIFE) for _ in range(KILLS)]

    t0 = time.time()
    kills: list[tuple[float, float, str, bool, str]] = []
    with Watch(w) as watch:
        w.ctl.start()
        for life in lives:
            if converged(w, versions[-1][0]):
                # quicker than the kills (a lightly loaded machine): the next promotion, so that
                # every kill lands on one in progress
                n = len(versions)
                versions.append((f"1.0.{n}", str(int(RETENTION) + 60_000 * n)))
                w.commit(versions[-1][0], [READABLE], retention=versions[-1][1])
            time.sleep(life)
            during = not converged(w, versions[-1][0])
            w.ctl.kill9()
            kills.append((time.time() - t0, life, versions[-1][0], during, progress(w)))
            w.ctl.start()
        killed_for = time.time() - t0
        last, retention = versions[-1]
        w.wait_all(last, timeout=300)
    took = time.time() - t0
    for at, life, v, during, ph in kills:
        print(f"kill at {at:6.1f}s after {life:.1f}s alive, {v} {'in progress' if during else 'converged'}: {ph}")
    hits = sum(1 for k in kills if k[3])
    print(f"seed {SEED}: {len(kills)} kills in {killed_for:.0f}s, {hits} during a promotion "
          f"({', '.join(v for v, _ in versions)}); {last} Succeeded everywhere {took:.0f}s after the first start")

    # every stage Succeeded on the last version, and no version got ahead of its predecessor stage
    for v, _ in versions:
        assert not watch.partial_promotions(v), "\n".join(watch.partial_promotions(v))
    # the kills hit promotions in progress, not a converged release
    assert hits >= KILLS * 3 // 4, f"only {hits}/{KILLS} kills during a promotion"

    # no action applied twice: journal rows and their full history
    w.ctl.stop()
    rows = w.store.journal_rows(w.name)
    history = journal_log(state)
    assert rows and history
    states = sorted({s for _, _, s, _, _ in history})
    print(f"journal: {len(rows)} rows, {len(history)} states recorded {states}")
    for (digest, action), seq in _by_action(history).items():
        print(f"  {action:60} {digest[:8]} {' '.join(seq)}")
    problems = double_applies(rows, history)
    assert not problems, "\n".join(problems)
    # a row is left 'started' when the kill interrupted its action and the next plan found the
    # resource converged (the action was not needed again); nothing failed
    assert not [r for r in rows if r["state"] not in ("done", "skipped", "started")], rows
    assert "failed" not in states, [(a, s) for _, a, s, _, _ in history if s == "failed"]

    # the backends: each resource once, as declared
    for s in STAGES:
        assert topic_shape(w.topic(s)) == (2, retention), (s, topic_shape(w.topic(s)))
        assert hive_relations(w.db(s)) == ["counts", "counts_v"], (s, hive_relations(w.db(s)))
        assert dag_files(w.dags_folder, w.dag).count(f"{w.dag}__{s}.py") == 1
    files = dag_files(w.dags_folder, w.dag)
    want = sorted(f"{w.dag}__{s}{ext}" for s in STAGES for ext in (".py", ".pipectl.json"))
    assert files == want, files

    # the audit chain and its signed anchors survived the kills
    verify = audit_verify(w.url, w.tmp, w.ctl.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(verify.stdout.strip())


def _by_action(history: list[tuple[str, str, str, str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for digest, action, state, _run, _stage in history:
        out.setdefault((digest, action), []).append(state)
    return out
