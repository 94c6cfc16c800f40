"""An in-memory world for unit tests of the real ``Reconciler`` (controller-runtime's envtest idea,
without any backend): a real ``Store`` on a temporary SQLite file, a real ``Ledger``, and fakes of
the narrow Protocols the engine takes (``engine.backends``: ``BackendsFactory`` → ``StagePorts``,
``engine.gate_request.GateRunner``, ``reader_for``, ``clock``).

- Each *installation* (dev, staging, prod; a canary stage runs on its target's, as with the real
  wiring) has one fake per backend. A fake keeps its live objects in a dict and applies plan
  actions to it, so tests assert the state of the world, not the calls made.
- Faults are scripted on a fake: ``observe_error`` (a backend down, or a bug), ``fail`` (an apply
  raises), ``ignore`` (an apply "succeeds" and changes nothing), ``delay`` (an applied change becomes
  visible only after that many seconds on the world's clock; meanwhile apply raises ``NotReadyYet``,
  as the real adapters do in the controller).
- Gates are scripted per (stage, gate); unscripted gates pass.
- Every ``commit`` writes a new directory (one per commit, as a git checkout would be) and loads
  it with ``controller.source.validate.load_repo``; ``reader_for(commit)`` reads that commit's files,
  so a rollback reads the known good's own DAG and job code.
- The clock only moves when a test advances it.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.adapters.base import ApplyResult, CallStats
from controller.adapters.spark_records import JobProgress, SourceProgress
from controller.audit.ledger import GateVerdict, Ledger
from controller.engine.gate_request import GateRequest
from controller.engine.passes import Result
from controller.engine.reconciler import Reconciler
from controller.model.errors import NotReadyYet
from controller.model.reasons import Reason, Verdict
from controller.model.status import ReleaseStatus, StageStatus
from controller.plan.actions import Action, Op
from controller.plan.desired import StageContext
from controller.plan.resources import (
    DagResource,
    Resource,
    ResourceKind,
    StreamingJobResource,
    TransformResource,
    ViewResource,
)
from controller.source.revision import revision
from controller.source.validate import RepoSnapshot, load_repo
from controller.store.db import Store

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
RELEASE = "metrics"
STAGES = ("dev", "staging", "canary", "prod")

# --- the manifest repository ---------------------------------------------------------------------

SCHEMA = """{"type": "record", "name": "Event", "namespace": "test",
 "fields": [{"name": "host", "type": "string"}, {"name": "value", "type": "double"},
            {"name": "ts", "type": "long"}]}
"""


def env_yaml(name: str, prefix: str, promotion: str = "automatic") -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: {name}
spec:
  kafka: {{bootstrapServers: "kafka-{name}:9092", topicPrefix: "{prefix}."}}
  hive: {{host: hive-{name}, port: 10000, databasePrefix: "{prefix}_"}}
  presto: {{host: presto-{name}, port: 8080, catalog: hive}}
  airflow: {{url: "http://airflow-{name}:8080", username: admin, passwordFrom: "env:PIPECTL_SECRET_AIRFLOW_PASSWORD"}}
  spark: {{master: "local[1]"}}
  promotion: {promotion}
"""


PROD_ENV = """\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: prod
spec:
  kafka: {{bootstrapServers: "kafka-prod:9092", topicPrefix: ""}}
  hive: {{host: hive-prod, port: 10000, databasePrefix: ""}}
  presto: {{host: presto-prod, port: 8080, catalog: hive}}
  airflow: {{url: "http://airflow-prod:8080", username: admin, passwordFrom: "env:PIPECTL_SECRET_AIRFLOW_PASSWORD"}}
  spark: {{master: "local[1]"}}
  promotion: {promotion}
"""

CANARY_ENV = """\
apiVersion: pipectl.dev/v1alpha1
kind: Environment
metadata:
  name: canary
spec:
  canaryOf: prod
  promotion: automatic
"""

DEFAULT_GATES = """\
      - {name: keeps-up, type: streamingHealth, maxLagSeconds: 60}
      - {name: matches-baseline, type: canaryComparison, stages: [canary], tolerance: 0.02}
"""


def release_yaml(
    version: str = "1.0.0",
    *,
    name: str = RELEASE,
    gates: str = DEFAULT_GATES,
    depends_on: Sequence[str] = (),
    stages: Sequence[str] = STAGES,
    rollout_extra: str = "",
) -> str:
    """A small blue/green release: one topic, one per-version table, its serving view, one
    streaming job and one DAG (the example repo's host-metrics, trimmed)."""
    deps = f"  dependsOn: [{', '.join(depends_on)}]\n" if depends_on else ""
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: {name}
spec:
  version: {version}
  owner: observability
{deps}  schemas:
    - {{name: event, format: avro, path: schemas/event.avsc, compatibility: BACKWARD}}
  topics:
    - name: telemetry.{name.replace("-", "_")}_events
      partitions: 3
      replicationFactor: 1
      valueSchema: event
  tables:
    - name: telemetry.{name.replace("-", "_")}_1m
      columns:
        - {{name: host, type: string}}
        - {{name: window_start, type: timestamp}}
        - {{name: samples, type: bigint}}
      partitionedBy:
        - {{name: dt, type: string}}
  views:
    - name: telemetry.{name.replace("-", "_")}
      table: telemetry.{name.replace("-", "_")}_1m
  streamingJobs:
    - name: agg
      entrypoint: jobs/{name.replace("-", "_")}_agg.py
      sources: [{{topic: telemetry.{name.replace("-", "_")}_events}}]
      sinks: [{{table: telemetry.{name.replace("-", "_")}_1m}}]
      trigger: 10s
      strategy: blueGreen
  dags:
    - id: {name.replace("-", "_")}_daily
      path: dags/{name.replace("-", "_")}_daily.py
      schedule: "@daily"
  rollout:
    stages: [{", ".join(stages)}]
    gates:
{gates}    rollback:
      automatic: true
{rollout_extra}"""


def repo_files(prod_promotion: str = "automatic", **release: Any) -> dict[str, str]:
    """Environments dev, staging, canary (of prod), prod and the release ``metrics``."""
    return {
        "environments/dev.yaml": env_yaml("dev", "dev"),
        "environments/staging.yaml": env_yaml("staging", "staging"),
        "environments/canary.yaml": CANARY_ENV,
        "environments/prod.yaml": PROD_ENV.format(promotion=prod_promotion),
        "schemas/event.avsc": SCHEMA,
        "jobs/metrics_agg.py": "print('aggregate v1')\n",
        "dags/metrics_daily.py": "DAG = 'v1'\n",
        f"releases/{RELEASE}.yaml": release_yaml(**release),
    }


# --- the clock -------------------------------------------------------------------------------------


class Clock:
    """The reconciler's clock: it moves only when a test advances it."""

    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- fake backends -------------------------------------------------------------------------------

Key = tuple[ResourceKind, str]


class FakeBackend:
    """One backend of one installation: live objects by (kind, name); ``apply`` changes them.

    Implements ``controller.adapters.base.Adapter``. What a test may script:

    - ``observe_error``: raised by every read (the backend is down, or a bug in an adapter);
    - ``fail``: name → exception raised by ``apply`` of that resource (nothing changes);
    - ``ignore``: names whose ``apply`` reports success and changes nothing (a backend that lies);
    - ``delay``: seconds on the world's clock before an applied change is visible. Until then
      ``apply`` raises ``NotReadyYet`` (what the real adapters do in the controller, instead of
      sleeping) and reads show the old object.
    """

    def __init__(self, backend: str, kinds: set[ResourceKind], clock: Clock):
        self.backend = backend
        self.kinds = frozenset(kinds)
        self.stats = CallStats()
        self.clock = clock
        self.live: dict[Key, Resource] = {}
        self.pending: dict[Key, tuple[datetime, Resource | None]] = {}
        self.observe_error: BaseException | None = None
        self.fail: dict[str, BaseException] = {}
        self.ignore: set[str] = set()
        self.delay = 0.0
        self.wait_reason = Reason.AWAITING_BACKEND
        self.retry_after = 2.0

    # --- the Adapter protocol ------------------------------------------------------------------

    def observe(self, kind: ResourceKind, names: Sequence[str]) -> dict[str, Resource]:
        self._read("observe")
        return {n: self.live[(kind, n)] for n in names if (kind, n) in self.live}

    def apply(self, action: Action) -> ApplyResult:
        self._read("apply")
        if action.name in self.fail:
            raise self.fail[action.name]
        if action.name in self.ignore:
            return ApplyResult(action_id=action.id, changed=True, message="applied")
        key = (action.kind, action.name)
        target = None if action.op is Op.DELETE else self.live_form(action)
        if key in self.pending:
            raise NotReadyYet(
                self.backend, f"{action.name}: not visible yet", self.wait_reason, self.retry_after
            )
        if self.live.get(key) == target:
            return ApplyResult(action_id=action.id, changed=False)
        if self.delay > 0:
            self.pending[key] = (self.clock() + timedelta(seconds=self.delay), target)
            raise NotReadyYet(
                self.backend, f"{action.name}: not visible yet", self.wait_reason, self.retry_after
            )
        self._set(key, target)
        return ApplyResult(action_id=action.id, changed=True)

    # --- helpers --------------------------------------------------------------------------------

    def live_form(self, action: Action) -> Resource:
        """What the backend reports after applying ``action`` (the desired object, as read back)."""
        assert action.desired is not None
        return action.desired

    def _read(self, op: str) -> None:
        self.stats.count(op)
        if self.observe_error is not None:
            raise self.observe_error
        now = self.clock()
        for key, (at, obj) in list(self.pending.items()):
            if at <= now:
                del self.pending[key]
                self._set(key, obj)

    def _set(self, key: Key, obj: Resource | None) -> None:
        if obj is None:
            self.live.pop(key, None)
        else:
            self.live[key] = obj

    def names(self, kind: ResourceKind) -> set[str]:
        return {n for k, n in self.live if k is kind}

    def get(self, kind: ResourceKind, name: str) -> Any:
        return self.live.get((kind, name))


class FakeKafka(FakeBackend):
    """Topics; offsets grow with the clock (10 records per second and partition)."""

    def __init__(self, clock: Clock):
        super().__init__("kafka", {ResourceKind.TOPIC}, clock)
        self.groups: dict[str, dict[str, dict[int, int]]] = {}
        """Consumer group → topic → partition → committed offset."""

    def _partitions(self, topic: str) -> int:
        t = self.live.get((ResourceKind.TOPIC, topic))
        return int(getattr(t, "partitions", 1))

    def end_offsets(self, topic: str) -> dict[int, int]:
        self._read("end_offsets")
        at = int((self.clock() - T0).total_seconds() * 10)
        return {p: max(0, at) for p in range(self._partitions(topic))}

    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        self._read("offsets_for_times")
        at = int((ts_ms / 1000 - T0.timestamp()) * 10)
        return {p: max(0, at) for p in range(self._partitions(topic))}

    def committed_offsets(self, group: str) -> dict[str, dict[int, int]]:
        self._read("list_consumer_group_offsets")
        return {t: dict(offsets) for t, offsets in self.groups.get(group, {}).items()}


class FakeSpark(FakeBackend):
    """Streaming jobs. A running job completes one batch per ``batch_seconds`` of the clock since it
    (re)started, each with input, and its watermark follows the clock."""

    def __init__(self, clock: Clock):
        super().__init__("spark", {ResourceKind.STREAMING_JOB}, clock)
        self.batch_seconds = 10.0
        self.started_at: dict[str, datetime] = {}
        self.starts: dict[str, int] = {}
        """Job name → how many times it was (re)started: a restart is a new run on its checkpoint."""
        self.committed: dict[str, dict[str, dict[int, int]]] = {}
        """Job name → topic → partition → the offset its last batch processed up to (scripted)."""
        self.undecodable: dict[str, int] = {}
        """Job name → the undecodable records its status file reports (scripted; unset: none reported)."""

    def live_form(self, action: Action) -> Resource:
        assert isinstance(action.desired, StreamingJobResource)
        return action.desired

    def _set(self, key: Key, obj: Resource | None) -> None:
        super()._set(key, obj)
        name = key[1]
        if isinstance(obj, StreamingJobResource) and obj.running:
            self.started_at[name] = self.clock()
            self.starts[name] = self.starts.get(name, 0) + 1
        else:
            self.started_at.pop(name, None)

    def progress(self, name: str) -> JobProgress | None:
        self._read("progress")
        job = self.live.get((ResourceKind.STREAMING_JOB, name))
        if not isinstance(job, StreamingJobResource) or not job.running or name not in self.started_at:
            return None
        now = self.clock()
        batch = int((now - self.started_at[name]).total_seconds() // self.batch_seconds)
        return JobProgress(
            name=name,
            query_id=name,
            run_id=f"{name}#{self.starts[name]}",
            batch_id=batch,
            num_input_rows=100,
            input_rows_per_second=10.0,
            processed_rows_per_second=20.0,
            batch_duration_ms=1000,
            watermark=now.isoformat(),
            timestamp=now,
            sources=[SourceProgress(description="kafka", end_offsets=self.committed.get(name, {}))],
            undecodable_records=self.undecodable.get(name),
        )

    def running(self) -> set[str]:
        return {n for (k, n), j in self.live.items() if isinstance(j, StreamingJobResource) and j.running}


class FakeAirflow(FakeBackend):
    """DAGs; Airflow reports a deployed DAG's digest, version tag and paused state (not its source)."""

    def __init__(self, clock: Clock):
        super().__init__("airflow", {ResourceKind.DAG}, clock)

    def live_form(self, action: Action) -> Resource:
        assert isinstance(action.desired, DagResource)
        return action.desired.model_copy(update={"source": None})


class FakeTransforms(FakeBackend):
    """SQL transforms; a materialized one reports the physical table its serving view reads, and
    (like the real adapter) not its compiled SQL."""

    def __init__(self, clock: Clock):
        super().__init__("transforms", {ResourceKind.TRANSFORM}, clock)

    def live_form(self, action: Action) -> Resource:
        assert isinstance(action.desired, TransformResource)
        d = action.desired
        table = f"{d.name}__{d.digest[:12]}" if d.materialized in ("table", "incremental") else None
        return d.model_copy(update={"compiled_sql": None, "relation": table})


class FakePresto:
    """``SqlPort``: a query answers ``by_op[op]`` if set, else ``rows``."""

    def __init__(self) -> None:
        self.stats = CallStats()
        self.catalog = "hive"
        self.rows: list[tuple[Any, ...]] = [(1,)]
        self.by_op: dict[str, list[tuple[Any, ...]]] = {}

    def query(self, sql: str, *, op: str = "query") -> list[tuple[Any, ...]]:
        self.stats.count(op)
        return list(self.by_op.get(op, self.rows))


@dataclass
class Installation:
    """One stage's backends (``StagePorts``)."""

    kafka: FakeKafka
    hive: FakeBackend
    airflow: FakeAirflow
    spark: FakeSpark
    presto: FakePresto
    transforms: FakeTransforms
    prometheus: Any = None
    """A ``MetricsPort``, or None: the stage's Environment sets no prometheus endpoint."""

    @classmethod
    def new(cls, clock: Clock) -> Installation:
        hive = FakeBackend("hive", {ResourceKind.DATABASE, ResourceKind.TABLE, ResourceKind.VIEW}, clock)
        return cls(
            FakeKafka(clock), hive, FakeAirflow(clock), FakeSpark(clock), FakePresto(), FakeTransforms(clock)
        )

    @property
    def adapters(self) -> Mapping[ResourceKind, Any]:
        return {
            ResourceKind.DATABASE: self.hive,
            ResourceKind.TABLE: self.hive,
            ResourceKind.VIEW: self.hive,
            ResourceKind.TOPIC: self.kafka,
            ResourceKind.DAG: self.airflow,
            ResourceKind.STREAMING_JOB: self.spark,
            ResourceKind.TRANSFORM: self.transforms,
        }

    def backends(self) -> list[FakeBackend]:
        return [self.kafka, self.hive, self.airflow, self.spark, self.transforms]

    def objects(self) -> dict[Key, Resource]:
        """Every live object of the installation (a snapshot)."""
        out: dict[Key, Resource] = {}
        for b in self.backends():
            out.update(b.live)
        return out

    def view(self, name: str) -> ViewResource:
        v = self.hive.get(ResourceKind.VIEW, name)
        assert isinstance(v, ViewResource), f"no view {name}"
        return v

    def dag(self, name: str) -> DagResource:
        d = self.airflow.get(ResourceKind.DAG, name)
        assert isinstance(d, DagResource), f"no DAG {name}"
        return d


# --- gates -----------------------------------------------------------------------------------------


class FakeGates:
    """``GateRunner``: every gate of the stage answers what the test scripted (default: pass)."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], tuple[Verdict, str]] = {}
        self.evidence: dict[tuple[str, str], dict[str, Any]] = {}
        self.evaluated: list[tuple[str, str]] = []

    def set(
        self, stage: str, gate: str, verdict: Verdict, message: str = "", *, unavailable: tuple[str, ...] = ()
    ) -> None:
        """Script a gate; ``unavailable``: the backends it could not reach (``Gates.evaluate``'s evidence)."""
        self.script[(stage, gate)] = (verdict, message or f"scripted {verdict}")
        if unavailable:
            self.evidence[(stage, gate)] = {"unavailable": sorted(unavailable)}
        else:
            self.evidence.pop((stage, gate), None)

    def clear(self) -> None:
        self.script.clear()
        self.evidence.clear()

    def evaluate(self, req: GateRequest) -> list[GateVerdict]:
        out = []
        for gate in req.release.spec.rollout.gates:
            if gate.stages is not None and req.stage not in gate.stages:
                continue
            if req.only is not None and gate.name not in req.only:
                continue
            verdict, msg = self.script.get((req.stage, gate.name), (Verdict.PASS, "ok"))
            self.evaluated.append((req.stage, gate.name))
            evidence = self.evidence.get((req.stage, gate.name), {})
            out.append(
                GateVerdict(name=gate.name, type=gate.type, verdict=str(verdict), message=msg, evidence=evidence)
            )
        return out


# --- the world ---------------------------------------------------------------------------------------


@dataclass
class World:
    """A real ``Reconciler`` over the fakes above; ``commit`` then ``reconcile`` like the controller."""

    tmp: Path
    prod_promotion: str = "automatic"
    bake_seconds: float = 60.0
    clock: Clock = field(default_factory=Clock)
    installations: dict[str, Installation] = field(default_factory=dict)
    commits: dict[str, Path] = field(default_factory=dict)
    head: str | None = None
    snap: RepoSnapshot | None = None

    def __post_init__(self) -> None:
        self.store = Store(f"sqlite:///{self.tmp}/state.db")
        self.ledger = Ledger(self.store)
        self.gates = FakeGates()
        self.reconciler = Reconciler(
            self.store,
            self.ledger,
            self.backends,
            self.gates,
            reader_for=self.reader_for,
            instance="unit",
            checkpoint_root=str(self.tmp / "checkpoints"),
            bake_seconds=self.bake_seconds,
            verify_interval=10.0,
            soak_timeout=600.0,
            clock=self.clock,
        )

    def clone(self, tmp: Path) -> World:
        """An independent copy under ``tmp``: state store, commits, live objects, scripts, clock
        (a fixture promotes once and hands each test its own copy)."""
        self.store.close()  # the last connection closed: SQLite folds its WAL into the file
        shutil.copytree(self.tmp, tmp, dirs_exist_ok=True)
        clock = Clock(self.clock.now)
        w = World(tmp, self.prod_promotion, self.bake_seconds, clock=clock)
        w.installations = copy.deepcopy(self.installations, {id(self.clock): clock})
        w.commits = {c: tmp / root.relative_to(self.tmp) for c, root in self.commits.items()}
        w.head = self.head
        if self.head is not None:
            w.snap = load_repo(w.commits[self.head])
            w.snap.commit = self.head
        w.gates.script = dict(self.gates.script)
        return w

    # --- the Protocols the reconciler takes -----------------------------------------------------

    def at(self, installation: str) -> Installation:
        """dev, staging or prod (the canary stage runs on prod's)."""
        if installation not in self.installations:
            self.installations[installation] = Installation.new(self.clock)
        return self.installations[installation]

    def backends(self, ctx: StageContext, root: Path | None) -> Installation:
        return self.at(ctx.canary_of or ctx.stage)

    def reader_for(self, commit: str | None) -> tuple[Path, Callable[[str], bytes]]:
        ref = commit or self.head
        assert ref is not None and ref in self.commits, f"unknown commit {ref}"
        root = self.commits[ref]

        def read(rel: str) -> bytes:
            return (root / rel).read_bytes()

        return root, read

    # --- git -------------------------------------------------------------------------------------

    def commit(self, files: Mapping[str, str]) -> RepoSnapshot:
        """A new commit: the previous tree plus ``files``; returns its validated snapshot."""
        n = len(self.commits) + 1
        sha = hashlib.sha1(f"commit {n}".encode()).hexdigest()  # a name for a fake commit
        root = self.tmp / "commits" / f"{n:03d}"
        if self.head is not None:
            shutil.copytree(self.commits[self.head], root)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        snap = load_repo(root)
        assert not snap.problems, [str(p) for p in snap.problems]
        snap.commit = sha
        self.commits[sha], self.head, self.snap = root, sha, snap
        return snap

    def release(self, version: str, **kw: Any) -> RepoSnapshot:
        """Commit ``releases/metrics.yaml`` at ``version``."""
        return self.commit({f"releases/{kw.get('name', RELEASE)}.yaml": release_yaml(version, **kw)})

    def approve(self, stage: str, who: str = "alice", name: str = RELEASE) -> None:
        """``pipectl approve``: the head commit's version and content, at ``stage``."""
        assert self.snap is not None
        rel = self.snap.release(name)
        self.store.approve(name, stage, rel.spec.version, who, revision(rel, self.snap.root).digest)

    # --- passes ------------------------------------------------------------------------------------

    def reconcile(self, name: str = RELEASE) -> Result:
        assert self.snap is not None
        return self.reconciler.reconcile(self.snap, name)

    def run_until(
        self, done: Callable[[], bool], *, name: str = RELEASE, step: float = 30.0, max_passes: int = 40
    ) -> list[Result]:
        """Passes over ``name``, the clock advanced ``step`` seconds between them, until ``done``."""
        results = []
        for _ in range(max_passes):
            res = self.reconcile(name)
            results.append(res)
            assert not res.errors, res.errors
            if done():
                return results
            self.clock.advance(step)
        raise AssertionError(f"not done after {max_passes} passes: {self.describe(name)}")

    def promote_everywhere(self, version: str, name: str = RELEASE) -> list[Result]:
        """Run passes until ``version`` is Succeeded at every stage (gates as scripted)."""
        return self.run_until(lambda: self.succeeded_everywhere(version, name), name=name)

    def settle(self, passes: int = 4, step: float = 120.0, name: str = RELEASE) -> None:
        """Error-free passes ``step`` seconds apart after a promotion: bakes end, inventories are
        recorded, the fast path remembers each stage's plan."""
        for _ in range(passes):
            self.clock.advance(step)
            res = self.reconcile(name)
            assert not res.errors, res.errors

    # --- reading the world -----------------------------------------------------------------------

    def status(self, name: str = RELEASE) -> ReleaseStatus:
        return self.reconciler.load_status(name)

    def stage(self, stage: str, name: str = RELEASE) -> StageStatus:
        return self.status(name).stages.get(stage, StageStatus())

    def ready(self, name: str = RELEASE) -> Any:
        return next(c for c in self.status(name).conditions if c.type == "Ready")

    def succeeded_everywhere(self, version: str, name: str = RELEASE) -> bool:
        st = self.status(name)
        return all(
            (s := st.stages.get(stage)) is not None and s.version == version and str(s.phase) == "Succeeded"
            for stage in STAGES
        )

    def known_good(self, stage: str, name: str = RELEASE) -> str | None:
        kg = self.store.known_good(name, stage)
        return str(kg["version"]) if kg else None

    def audit(self, kind: str | None = None, name: str = RELEASE) -> list[dict[str, Any]]:
        return [r for r in self.ledger.records(name) if kind is None or r["kind"] == kind]

    def history(self, name: str = RELEASE) -> list[dict[str, Any]]:
        """Rollout history rows (one per gate attempt), oldest first."""
        return [r for r in reversed(self.store.history(name)) if r["kind"] == "rollout"]

    def objects(self) -> dict[str, dict[Key, Resource]]:
        """A snapshot of every installation's live objects."""
        return {n: dict(i.objects()) for n, i in self.installations.items()}

    def describe(self, name: str = RELEASE) -> str:
        st = self.status(name)
        stages = {s: f"{v.version} {v.phase} {v.reason}: {v.message}" for s, v in st.stages.items()}
        return f"{st.phase} {stages} {[c.message for c in st.conditions]}"


def job(stage: str, version: str, name: str = RELEASE) -> str:
    """The physical name of the release's blue/green job of ``version`` at installation ``stage``."""
    return f"{stage}-{name}-agg-v{version.replace('.', '-')}"


def table(stage: str, version: str, name: str = RELEASE) -> str:
    prefix = "" if stage == "prod" else f"{stage}_"
    return f"{prefix}telemetry.{name.replace('-', '_')}_1m__v{version.replace('.', '_')}"


def view(stage: str, name: str = RELEASE) -> str:
    prefix = "" if stage == "prod" else f"{stage}_"
    return f"{prefix}telemetry.{name.replace('-', '_')}"


def dag(stage: str, name: str = RELEASE) -> str:
    return f"{name.replace('-', '_')}_daily__{stage}"


# A release of another owner whose transform reads `metrics`' table (``dependsOn``): tests of upstream
# resolution through the real Reconciler.
DAILY = "daily"
DAILY_YAML = """\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata:
  name: daily
spec:
  version: 1.0.0
  owner: analytics
  dependsOn: [metrics]
  transforms:
    - name: reports.metrics_daily
      sql: transforms/metrics_daily.sql
      materialized: table
  rollout:
    stages: [dev, staging, canary, prod]
"""
DAILY_SQL = """\
SELECT host, SUM(samples) AS samples, dt
FROM {{ ref('telemetry.metrics_1m') }}
GROUP BY host, dt
"""
