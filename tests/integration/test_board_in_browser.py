"""The release board in a real browser: headless Chromium from Debian (``/usr/bin/chromium``) driven by
playwright, against a real controller on a throwaway git repo and the local stack.

The release has a topic, a table in the layout of ``host_metrics_1m``, a serving view and a
dataQuality gate; stages dev -> canary (of prod) -> prod, where promotion into prod needs an
approval by alice (prod's only approver). With 1.0.0 waiting at prod, bob (not an approver) opens the
release page and finds no approve button but the API's reason; alice finds "Approve 1.0.0 for prod",
clicks it, sees the approval confirmed, and 1.0.0 reaches prod. The test then writes per-minute rows into prod's table and into the canary's shadow table with a quarter of
the samples missing, and commits 1.1.0, whose canary-only dataQuality gate wants every window
complete. With the board open the whole time, the dev lane shows 1.1.0 and the canary lane 1.1.0
RolledBack without a page load.

The canary chart: a canaryComparison run by the controller needs a blue/green Spark job and at
least three closed one-minute windows (276 s in the demo), too long for this test. So the test runs
the real gate (``controller.rollout.gates.evaluate``, queries through Presto) over the same two
tables and appends its verdict to the release's audit ledger as a ``gate`` record with actor
``test_board_in_browser`` — real evidence in the shape the controller records — and the release
page must draw it, next to the lineage graph and the audit timeline with the controller's rollback.
Screenshots go to ``.pipectl/artifacts/board/``; the browser's console must stay free of errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import (
    Ctl,
    canary_env_yaml,
    commit_files,
    drop_everything,
    free_port,
    init_repo,
    stage_env_yaml,
    stage_is,
    stage_status,
    token_for,
    wait_for,
)
from pyhive import hive, presto

from controller.audit.ledger import AuditRecord, GateVerdict, Ledger
from controller.model.manifest import Environment, PipelineRelease
from controller.model.reasons import Verdict
from controller.plan.desired import stage_context
from controller.rollout.gates import GateContext, JobNotFound, evaluate
from controller.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "controller" / "board" / "dist" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".pipectl" / "artifacts" / "board"
STAGES = ["dev", "canary", "prod"]
READABLE = {"name": "table-readable", "type": "dataQuality", "query": "SELECT count(*) FROM rc.metrics_1m",
            "expect": ">= 0"}
COMPLETE = {"name": "windows-complete", "type": "dataQuality", "stages": ["canary"],
            "query": "SELECT min(samples) FROM rc.metrics_1m", "expect": ">= 100"}
MATCHES = {"name": "matches-baseline", "type": "canaryComparison", "stages": ["canary"], "tolerance": 0.02}
COLUMNS = [("host", "string"), ("metric", "string"), ("window_start", "timestamp"), ("samples", "bigint"),
           ("avg_value", "double"), ("max_value", "double")]


def release(name: str, version: str, gates: list[dict[str, Any]]) -> str:
    doc = {
        "apiVersion": "pipectl.dev/v1alpha1",
        "kind": "PipelineRelease",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "topics": [{"name": "rc.events", "partitions": 1, "replicationFactor": 1}],
            "tables": [{"name": "rc.metrics_1m", "columns": [{"name": n, "type": t} for n, t in COLUMNS],
                        "partitionedBy": [{"name": "dt", "type": "string"}]}],
            "views": [{"name": "rc.metrics", "table": "rc.metrics_1m"}],
            "rollout": {"stages": STAGES, "gates": gates, "rollback": {"automatic": True}},
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def insert_windows(db: str) -> None:
    """Eight one-minute windows ending now: 100 samples per key in prod's table, 75 in the canary's."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=8)
    con = hive.connect("127.0.0.1", 10000, auth="NOSASL")
    try:
        cur = con.cursor()
        for table, samples in ((f"{db}.metrics_1m", 100), (f"{db}.metrics_1m__canary", 75)):
            values = ", ".join(
                f"('host-{h}', '{m}', TIMESTAMP '{start + timedelta(minutes=w):%Y-%m-%d %H:%M:%S}', {samples}, "
                f"{40 + h * 5 + w * 0.5}, {80 + h})"
                for w in range(8) for h in range(4) for m in ("cpu", "mem")
            )
            cur.execute(f"INSERT INTO {table} PARTITION (dt='{start:%Y-%m-%d}') VALUES {values}")
    finally:
        con.close()


class PrestoData:
    """The gates' data port over Presto; this test deploys no jobs (no progress, offsets, approvals)."""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        cur = presto.connect(host="127.0.0.1", port=8080, catalog="hive", schema="default", username="it").cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    def job_progress(self, job_name: str) -> None:
        raise JobNotFound(job_name)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {}

    def live_schema(self, release: str, schema: str) -> list[str]:
        return []

    def approval(self, release: str, stage: str, version: str, revision: str | None) -> None:
        return None


def record_canary_comparison(w: dict[str, Any]) -> None:
    """Run the real canaryComparison gate over prod's table and the canary's shadow table and append
    its verdict to the ledger (see the module's docstring for why the controller does not run it)."""
    repo, db = w["repo"], f"it{w['uid']}prd_rc"
    envs = {}
    for p in (repo / "environments").glob("*.yaml"):
        env = Environment.model_validate(yaml.safe_load(p.read_text()))
        envs[env.name] = env
    rel = PipelineRelease.model_validate(yaml.safe_load(release(w["name"], "1.1.0", [MATCHES])))
    started = datetime.now(UTC)
    ctx = GateContext(release=rel, stage="canary", stage_ctx=stage_context("canary", envs), now=started,
                      canary_tables={"rc.metrics_1m": f"{db}.metrics_1m__canary"},
                      baseline_tables={"rc.metrics_1m": f"{db}.metrics_1m"})
    v = evaluate(rel.spec.rollout.gates[0], ctx, PrestoData())  # type: ignore[arg-type]
    assert v.verdict is Verdict.FAIL, v.message
    rec = AuditRecord(run_id=uuid.uuid4().hex, kind="gate", release=w["name"], version="1.1.0", stage="canary",
                      gates=[GateVerdict.model_validate(v.model_dump(mode="json"))], outcome="failed",
                      actor="test_board_in_browser", message="canaryComparison run by the test (no Spark job)",
                      started_at=started, finished_at=datetime.now(UTC))
    Ledger(Store(f"sqlite:///{w['state']}")).append(rec)


@pytest.fixture
def world(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium (.ci/run installs it)")
    if not BOARD.exists():
        pytest.fail(f"{BOARD.relative_to(ROOT)} is missing: make install builds the board")
    uid, folder = unique_name, stack["airflow_dags_folder"]
    files = {
        "environments/dev.yaml": stage_env_yaml("dev", f"it{uid}dev.", f"it{uid}dev_", folder),
        "environments/canary.yaml": canary_env_yaml("canary", "prod"),
        "environments/prod.yaml": stage_env_yaml("prod", f"it{uid}prd.", f"it{uid}prd_", folder, "approval")
        + "  approvers: {users: [alice]}\n",
    }
    name = f"board-{uid}"
    files["releases/rc.yaml"] = release(name, "1.0.0", [READABLE])
    repo = init_repo(tmp_path, files, "1.0.0")
    state = tmp_path / "state" / "state.db"
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    try:
        yield {"uid": uid, "name": name, "repo": repo, "state": state, "ctl": ctl}
    finally:
        ctl.stop()
        drop_everything(uid, [f"it{uid}dev_rc", f"it{uid}prd_rc"], folder, None)


def wait_stage(w: dict[str, Any], stage: str, version: str, phase: str, timeout: float) -> None:
    def ok() -> bool:
        st = stage_status(w["state"], w["name"], stage)
        if st.get("version") == version and st.get("phase") in ("Failed", "RolledBack") and st["phase"] != phase:
            raise AssertionError(f"{stage} {version} ended {st}")
        return bool(stage_is(w["state"], w["name"], stage, version, phase))

    wait_for(ok, timeout, f"{stage} {phase} on {version}", w["ctl"].log)


def card(name: str, lane: str, version: str, phase: str | None = None) -> str:
    sel = f'[data-lane="{lane}"] [data-release="{name}"][data-version="{version}"]'
    return sel + (f'[data-phase="{phase}"]' if phase else "")


def login(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def approve_in_browser(w: dict[str, Any], browser: Any, watch: Callable[[Any], None]) -> Any:
    """Bob sees why he may not approve prod (no button); alice approves 1.0.0 for prod with the button.
    Returns alice's page, back on the overview."""
    name, url = w["name"], f"http://127.0.0.1:{w['ctl'].port}/#/release/{w['name']}"
    bob = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    watch(bob)
    login(bob, url, token_for(w["state"], "bob"))
    refused = bob.wait_for_selector('#approvals [data-approval-stage="prod"].may-not', timeout=20_000).inner_text()
    assert "bob may not approve stage prod" in refused and "1.0.0" in refused, refused
    assert bob.locator("#approvals [data-approve]").count() == 0
    bob.screenshot(path=str(ARTIFACTS / "release-not-an-approver.png"), full_page=True)
    bob.context.close()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch(page)
    login(page, url, w["token"])
    button = page.wait_for_selector('#approvals button[data-approve="prod"]', timeout=20_000)
    assert button.inner_text() == "Approve 1.0.0 for prod"
    page.screenshot(path=str(ARTIFACTS / "release-approver.png"), full_page=True)
    button.click()
    result = page.wait_for_selector("#approve-result.ok", timeout=20_000).inner_text()
    assert result.startswith("Approved 1.0.0 for prod as alice (revision sha256:"), result
    page.click('a[href="#/"]')
    page.wait_for_selector(card(name, "prod", "1.0.0", "Succeeded"), timeout=150_000)
    return page


def test_board_in_browser(world: dict[str, Any]) -> None:
    from playwright.sync_api import ConsoleMessage, sync_playwright

    w, ctl, name = world, world["ctl"], world["name"]
    ctl.start()
    t0 = time.time()
    for stage in STAGES[:2]:
        wait_stage(w, stage, "1.0.0", "Succeeded", 150)
    wait_for(lambda: stage_status(w["state"], name, "prod").get("reason") == "AwaitingApproval", 60,
             "prod AwaitingApproval", ctl.log)
    print(f"1.0.0 Succeeded at dev, canary and awaits approval at prod in {time.time() - t0:.0f}s")
    w["token"] = token_for(w["state"], "alice")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text} at {msg.location}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            def watch(p: Any) -> None:
                p.on("console", console)
                p.on("pageerror", lambda e: errors.append(f"page error: {e}"))

            page = approve_in_browser(w, browser, watch)
            insert_windows(f"it{w['uid']}prd_rc")
            for stage in STAGES:
                page.wait_for_selector(card(name, stage, "1.0.0", "Succeeded"), timeout=20_000)
            page.wait_for_selector("#live.on", timeout=10_000)
            page.evaluate("window.__sameDocument = 'no reload'")
            page.screenshot(path=str(ARTIFACTS / "overview-1.0.0.png"), full_page=True)

            commit_files(w["repo"], {"releases/rc.yaml": release(name, "1.1.0", [READABLE, COMPLETE])}, "1.1.0")
            ctl.webhook()
            page.wait_for_selector(card(name, "dev", "1.1.0", "Succeeded"), timeout=150_000)
            page.wait_for_selector(card(name, "canary", "1.1.0", "RolledBack"), timeout=150_000)
            assert page.evaluate("window.__sameDocument") == "no reload"  # the lanes changed in place
            assert page.is_visible(card(name, "prod", "1.0.0", "Succeeded"))
            assert "windows-complete" in page.inner_text(card(name, "canary", "1.1.0"))
            page.screenshot(path=str(ARTIFACTS / "overview-rolled-back.png"), full_page=True)
            record_canary_comparison(w)

            page.click(card(name, "canary", "1.1.0"))
            page.wait_for_selector("#canary-chart canvas", timeout=20_000)
            legend = page.inner_text("#canary-chart")
            assert "samples per window" in legend and "canary_samples" in legend and "baseline_samples" in legend
            total = page.inner_text('#canary-evidence tr[data-statistic="relativeTotal"]')
            assert "-25.00%" in total and "±2.00%" in total and "fail" in total, total  # statistic, threshold
            page.click('[data-pick="dev"]')
            page.wait_for_selector(f'#lineage-graph [data-node="view:it{w["uid"]}dev_rc.metrics"]', timeout=20_000)
            kinds = page.eval_on_selector_all("#lineage-graph g.node", "ns => ns.map(n => n.getAttribute('class'))")
            assert {"node kind-topic", "node kind-table", "node kind-view"} <= set(kinds), kinds
            assert page.locator("#lineage-graph path.edge").count() >= 1
            rollback = page.locator("#audit-timeline li.kind-rollback")
            assert rollback.count() == 1 and "1.1.0 → 1.0.0" in rollback.inner_text()
            assert page.locator("#audit-timeline li.kind-promotion").count() >= 3
            page.screenshot(path=str(ARTIFACTS / "release.png"), full_page=True)
            assert page.evaluate("window.__sameDocument") == "no reload"
        finally:
            browser.close()
    assert errors == [], errors
