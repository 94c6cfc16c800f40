"""The composition root: the one place that picks concrete adapters for a stage.

Endpoints come from the stage's Environment manifest; what a manifest does not say (Spark home
and conf dir, the Airflow DAG folder of a local stack) comes from the environment variables
``SPARK_HOME``/``SPARK_CONF_DIR``/``PIPECTL_AIRFLOW_DAGS_FOLDER`` or, failing those, from the local
stack's ``.stack/stack.json``. Adapters are cached per endpoint so a pass reuses connections.
Secrets (Airflow, Presto and Hive passwords, Kafka SASL) are resolved under the secrets policy
(``stage_secret``: allow-listed variables or files under the secrets directory, no defaults).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.adapters.airflow import AirflowAdapter, LocalFolderDeployer
from controller.adapters.base import Adapter
from controller.adapters.hive import HiveAdapter
from controller.adapters.kafka import KafkaAdapter
from controller.adapters.kafka_security import KafkaSecurity
from controller.adapters.presto import PrestoClient
from controller.adapters.prometheus import PrometheusClient
from controller.adapters.spark import JobRunner, LocalRunner, SparkAdapter
from controller.adapters.spark_operator import KubeSparkApplications, SparkOperatorRunner
from controller.adapters.spark_standalone import StandaloneRunner, standalone_api
from controller.adapters.transforms import TransformAdapter
from controller.audit.ledger import AuditRecord, AuditSink, GateVerdict, Ledger
from controller.engine.backends import StageBackends
from controller.engine.gate_request import GateRequest, GateRunner
from controller.engine.reconciler import Reconciler
from controller.engine.stage_ops import Reader
from controller.model.endpoints import REGISTRY_TOKEN_ENV, KafkaEndpoint, PrestoEndpoint, SparkEndpoint
from controller.model.errors import ConfigurationError, PipectlError
from controller.model.secret import Secret
from controller.obs.events import (
    EventSink,
    EventType,
    FanoutEventSink,
    JsonlEventSink,
    KafkaEventSink,
    make_event,
)
from controller.plan.desired import StageContext
from controller.plan.resources import ResourceKind
from controller.source.git import GitSource
from controller.source.secrets_policy import resolve_secret
from controller.store.db import Store


def stage_secret(stage: str, field: str, ref: str) -> Secret:
    """Resolve an Environment's secret reference under the secrets policy
    (``controller.source.secrets_policy``: allow-listed variables, the secrets directory, no
    default passwords); a refusal names the stage and the field."""
    try:
        return resolve_secret(ref)
    except ConfigurationError as e:
        raise ConfigurationError(f"stage {stage}: spec.{field}: {e}") from None


def presto_client(stage: str, spec: PrestoEndpoint) -> PrestoClient:
    password = stage_secret(stage, "presto.passwordFrom", spec.password_from) if spec.password_from else None
    return PrestoClient(
        spec.host, spec.port, spec.catalog, spec.username, https=spec.https, password=password,
        ca_file=spec.ssl_ca_file,
    )


def kafka_security(stage: str, spec: KafkaEndpoint) -> KafkaSecurity:
    ref = spec.sasl_password_from
    return KafkaSecurity(
        protocol=spec.security_protocol,
        mechanism=spec.sasl_mechanism,
        username=spec.sasl_username,
        password=stage_secret(stage, "kafka.saslPasswordFrom", ref) if ref else None,
        ca_file=spec.ssl_ca_file,
    )


def _stack_info() -> dict[str, Any]:
    try:
        from controller.devstack.info import load_stack_info

        return load_stack_info()
    except (FileNotFoundError, ImportError, OSError, ValueError):
        return {}


def spark_process_env() -> dict[str, str]:
    env: dict[str, str] = {}
    if os.environ.get("SPARK_HOME"):
        for k in ("SPARK_HOME", "SPARK_CONF_DIR", "JAVA_HOME", "PYSPARK_PYTHON"):
            if os.environ.get(k):
                env[k] = os.environ[k]
        return env
    try:
        from controller.devstack.info import spark_env

        return spark_env()
    except (FileNotFoundError, ImportError, OSError, KeyError, ValueError):
        import importlib.util

        import pyspark  # noqa: F401 - only to locate SPARK_HOME when no stack is configured

        spec = importlib.util.find_spec("pyspark")
        if spec and spec.origin:
            env["SPARK_HOME"] = str(Path(spec.origin).parent)
        return env


def _standalone_urls(master: str) -> dict[str, str]:
    """PIPECTL_SPARK_REST_URL/PIPECTL_SPARK_MASTER_UI_URL, else the local stack's master's own
    (its UI is not on Spark's default 8080, which is Presto's there) when it is this master."""
    env = dict(os.environ)
    try:
        from controller.devstack.info import load_stack_info

        comp = load_stack_info()["components"]["spark-master"]
    except (FileNotFoundError, ImportError, OSError, KeyError, ValueError):
        return env
    if comp.get("url") == master:
        env.setdefault("PIPECTL_SPARK_REST_URL", comp["rest_url"])
        env.setdefault("PIPECTL_SPARK_MASTER_UI_URL", comp["ui_url"])
    return env


def spark_runner(
    state_dir: Path, repo_root: Path, spec: SparkEndpoint, stage: str = "",
    job_env: dict[str, str] | None = None,
) -> JobRunner:
    """A ``SparkOperatorRunner`` for ``runner: sparkOperator`` (the stage names its objects' stage
    label), a ``StandaloneRunner`` for ``deployMode: cluster`` (a ``spark://`` master, validated by
    the model), else a ``LocalRunner``. ``job_env`` goes into every job's environment (the
    registry token, ``Wiring.job_env``)."""
    if spec.runner == "sparkOperator" and spec.spark_operator is not None:
        ops = spec.spark_operator
        return SparkOperatorRunner(KubeSparkApplications.connect(ops.namespace), ops, stage)
    env = {**spark_process_env(), **(job_env or {})}
    if spec.deploy_mode == "cluster":
        api = standalone_api(spec.master, _standalone_urls(spec.master))
        return StandaloneRunner(state_dir, repo_root, env, spec.master, api)
    return LocalRunner(state_dir, repo_root, env, master=spec.master, deploy_mode=spec.deploy_mode)


@dataclass
class Wiring:
    """Builds and caches StageBackends; ``state_dir`` holds the Spark job registry."""

    state_dir: Path = Path(".pipectl")
    repo_root: Path = Path(".")
    dag_meta: dict[str, Any] = field(default_factory=dict)
    requeue_waits: bool = False
    """The controller: adapters raise ``NotReadyYet`` instead of sleeping through a wait."""
    job_env: dict[str, str] = field(default_factory=dict)
    """Put in every streaming job's environment (local and standalone runners): the controller's
    read-only schema registry token (``REGISTRY_TOKEN_ENV``), set before the first backends."""
    _cache: dict[tuple[Any, ...], tuple[StageBackends, JobRunner]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def backends(self, ctx: StageContext, repo_root: Path | None = None) -> StageBackends:
        spec = ctx.spec
        if not (spec.kafka and spec.hive and spec.presto and spec.airflow and spec.spark):
            raise PipectlError(f"stage {ctx.stage}: environment lacks endpoints")
        # one set of adapters (and one Spark runner) per cluster and credentials: stages that differ
        # only in their prefixes share them, a changed security setting builds new ones
        key = (
            spec.kafka.model_dump_json(exclude={"topic_prefix"}),
            spec.hive.model_dump_json(exclude={"database_prefix"}),
            spec.presto.model_dump_json(),
            spec.airflow.model_dump_json(exclude={"dags_folder"}),
            spec.spark.master,
            # SparkApplication objects carry their stage in a label: one operator runner per stage
            (ctx.stage, spec.spark.model_dump_json()) if spec.spark.runner == "sparkOperator" else None,
            spec.prometheus.url if spec.prometheus else None,
        )
        with self._lock:
            if key in self._cache:
                be, cached_runner = self._cache[key]
                if repo_root is not None and isinstance(cached_runner, LocalRunner):
                    cached_runner.repo_root = repo_root.resolve()
                return be
            info = _stack_info()
            stage = ctx.stage
            presto = presto_client(stage, spec.presto)
            kafka = KafkaAdapter(spec.kafka.bootstrap_servers, security=kafka_security(stage, spec.kafka))
            hive_ref = spec.hive.password_from
            hive = HiveAdapter(
                spec.hive.host,
                spec.hive.port,
                auth=spec.hive.auth,
                username=spec.hive.username,
                password=stage_secret(stage, "hive.passwordFrom", hive_ref) if hive_ref else None,
                presto=presto,
                metastore_uri=spec.hive.metastore_uri,
            )
            dags = (
                spec.airflow.dags_folder
                or os.environ.get("PIPECTL_AIRFLOW_DAGS_FOLDER")
                or info.get("airflow_dags_folder")
            )
            if not dags:
                raise PipectlError(
                    "no Airflow DAG folder: set spec.airflow.dagsFolder or PIPECTL_AIRFLOW_DAGS_FOLDER"
                )
            airflow = AirflowAdapter(
                spec.airflow.url,
                spec.airflow.username,
                stage_secret(stage, "airflow.passwordFrom", spec.airflow.password_from).reveal(),
                LocalFolderDeployer(Path(dags), self.dag_meta),
            )
            airflow.requeue_waits = self.requeue_waits
            runner = spark_runner(
                self.state_dir / "spark", (repo_root or self.repo_root).resolve(), spec.spark, ctx.stage,
                self.job_env,
            )
            spark = SparkAdapter(runner)
            spark.requeue_waits = self.requeue_waits
            transforms = TransformAdapter(presto)
            adapters: dict[ResourceKind, Adapter] = {
                ResourceKind.DATABASE: hive,
                ResourceKind.TABLE: hive,
                ResourceKind.VIEW: hive,
                ResourceKind.TOPIC: kafka,
                ResourceKind.DAG: airflow,
                ResourceKind.STREAMING_JOB: spark,
                ResourceKind.TRANSFORM: transforms,
            }
            be = StageBackends(adapters, kafka, hive, presto, airflow, spark, transforms)
            if spec.prometheus is not None:
                be.prometheus = PrometheusClient(spec.prometheus.url)
            self._cache[key] = (be, runner)
            return be


def transform_adapter(ctx: StageContext) -> TransformAdapter:
    """A TransformAdapter on the stage's Presto alone (scheduled runs: no Kafka, Airflow or Spark)."""
    spec = ctx.spec.presto
    if spec is None:
        raise PipectlError(f"stage {ctx.stage}: environment lacks a presto endpoint")
    return TransformAdapter(presto_client(ctx.stage, spec))


# --- the runtime the CLI and the controller use -----------------------------------------------


@dataclass
class Runtime:
    store: Store
    ledger: Ledger
    source: GitSource
    wiring: Wiring
    reconciler: Reconciler


def build_runtime(
    repo: str,
    state_url: str,
    *,
    branch: str = "main",
    bake_seconds: float = 60.0,
    instance: str | None = None,
    lineage: bool = True,
    worktree: bool = False,
    requeue_waits: bool = False,
    events_kafka: tuple[str, str] | None = None,
    share_live_state: bool = False,
) -> Runtime:
    """Compose store, ledger (+OpenLineage and event sinks), git source, adapters and reconciler.
    ``share_live_state``: every plan reads live state from one pass-wide snapshot (the controller;
    ``controller.engine.snapshot``)."""
    import socket

    from controller.audit.lineage import OpenLineageSink
    from controller.engine.controller import state_dir_of

    state_dir = state_dir_of(state_url)
    store = Store(state_url)
    sinks: list[AuditSink] = []
    if lineage:
        sinks.append(OpenLineageSink(state_dir / "openlineage.jsonl"))
    events = event_sink(state_dir, events_kafka)
    sinks.append(_AuditEvents(events))
    ledger = Ledger(store, sinks)
    source = GitSource(repo, branch, cache_dir=state_dir / "git", worktree=worktree)
    # DAG tasks call back into pipectl (``pipectl transform run``): tell them how, via the sidecar.
    where = str(Path(repo).resolve()) if "://" not in repo else _public_url(repo)
    wiring = Wiring(state_dir=state_dir, dag_meta={"pipectl": {
        "python": sys.executable, "repo": where, "branch": branch,
    }}, requeue_waits=requeue_waits)
    if os.environ.get(REGISTRY_TOKEN_ENV):  # a CLI verb's jobs read the registry as its caller
        wiring.job_env[REGISTRY_TOKEN_ENV] = os.environ[REGISTRY_TOKEN_ENV]

    def reader_for(commit: str | None) -> tuple[Path, Reader]:
        root = source.checkout(commit).root

        def read(rel: str) -> bytes:
            full = (root / rel).resolve()
            if root.resolve() not in full.parents:
                raise PipectlError(f"path {rel!r} escapes the repository")
            return full.read_bytes()

        return root, read

    reconciler = Reconciler(
        store,
        ledger,
        wiring.backends,
        _LazyGates(store),
        reader_for=reader_for,
        instance=instance or f"{socket.gethostname()}:{os.getpid()}",
        checkpoint_root=str(state_dir / "checkpoints"),
        bake_seconds=bake_seconds,
        events=events,
        pin=source.pin,
    )
    if share_live_state:
        reconciler.ops.share_live_state()
    return Runtime(store, ledger, source, wiring, reconciler)


def _public_url(url: str) -> str:
    """``url`` without ``user:password@``: the DAG sidecar is world-readable, so a task that clones
    the repo authenticates with the worker's own git credentials, never with the controller's."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    # http(s): a user part alone may be a token; ssh: keep the user (git@…), drop a password
    keep = "" if parts.scheme in ("http", "https") else userinfo.partition(":")[0] + "@"
    return urlunsplit(parts._replace(netloc=keep + host))


def event_sink(state_dir: Path, kafka: tuple[str, str] | None) -> EventSink:
    """The operational event stream: JSON lines under the state directory, and a Kafka topic when
    ``kafka`` = (bootstrap servers, topic) is configured (``--events-kafka``)."""
    jsonl = JsonlEventSink(state_dir / "events" / "events.jsonl")
    if kafka is None:
        return jsonl
    from controller.adapters.kafka import event_producer

    bootstrap, topic = kafka
    return FanoutEventSink({"jsonl": jsonl, "kafka": KafkaEventSink(event_producer(bootstrap, topic), topic)})


class _LazyGates:
    """Imports the gate machinery (scipy is seconds to import) only when a gate is evaluated."""

    def __init__(self, store: Store):
        self.store = store
        self._gates: GateRunner | None = None

    def evaluate(self, req: GateRequest) -> list[GateVerdict]:
        if self._gates is None:
            from controller.engine.gating import Gates

            self._gates = Gates(self.store)
        return self._gates.evaluate(req)


class _AuditEvents:
    """Every audit record also goes to the operational event stream."""

    def __init__(self, sink: EventSink):
        self.sink = sink

    def emit(self, rec: AuditRecord) -> None:
        self.sink.emit(
            make_event(
                EventType.AUDIT,
                release=rec.release,
                stage=rec.stage,
                version=rec.version,
                run_id=rec.run_id,
                git_commit=rec.git_commit,
                instance=rec.controller_instance,
                reason=rec.reason,
                message=rec.message or rec.outcome,
                detail=rec.model_dump(mode="json"),
                ts=rec.finished_at,
            )
        )
