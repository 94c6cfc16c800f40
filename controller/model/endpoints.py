"""An Environment's endpoints: Kafka, Hive (Spark Thrift Server), Presto, Airflow, Spark, with the
security settings of each (``controller.model.manifest.EnvironmentSpec`` holds them).

Secrets are never inline: a ``*From`` field is a reference, ``env:VAR`` or ``file:PATH``, resolved
by the controller (``controller.source.secrets_policy``: only allow-listed variables and files under
the secrets directory; ``pipectl validate`` reports any other at the file, line and field). Every
value accepted here works in the adapters (``controller.adapters.kafka.KafkaSecurity``,
``controller.adapters.presto.PrestoClient``, ``controller.adapters.hive.HiveAdapter``); a setting
they cannot honour (e.g. Hive ``KERBEROS``) is refused here rather than failing at the first call.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from controller.model import identifiers as ids
from controller.model.base import ResourceName, SparkConf, Spec

REF_HELP = "A secret reference: env:VAR or file:PATH (never the secret itself)."

SECRET_REF_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("kafka", "saslPasswordFrom", "sasl_password_from"),
    ("hive", "passwordFrom", "password_from"),
    ("presto", "passwordFrom", "password_from"),
    ("airflow", "passwordFrom", "password_from"),
)
"""(endpoint, YAML field, attribute) of every secret reference an Environment may hold."""


def check_secret_ref(v: str | None, field: str) -> str | None:
    if v is not None and not (v.startswith("env:") or v.startswith("file:")):
        raise ValueError(f"{field} must be env:VAR or file:PATH (secrets are never inline)")
    return v


class KafkaEndpoint(Spec):
    bootstrap_servers: str
    topic_prefix: str = ""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="librdkafka security.protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (SASL_* protocols only)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name (SASL_* protocols only).")
    sasl_password_from: str | None = Field(default=None, description=REF_HELP)
    ssl_ca_file: str | None = Field(
        default=None, description="PEM CA bundle on the controller host (SSL and SASL_SSL only)."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not ids.TOPIC_RE.fullmatch(v):
            raise ValueError(f"invalid topic prefix {v!r}: allowed characters are [A-Za-z0-9._-]")
        return v

    @field_validator("sasl_password_from")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return check_secret_ref(v, "saslPasswordFrom")

    @model_validator(mode="after")
    def _security(self) -> KafkaEndpoint:
        sasl = self.security_protocol.startswith("SASL_")
        given = [
            alias
            for alias, value in (
                ("saslMechanism", self.sasl_mechanism),
                ("saslUsername", self.sasl_username),
                ("saslPasswordFrom", self.sasl_password_from),
            )
            if value is not None
        ]
        if sasl and len(given) < 3:
            raise ValueError(
                f"securityProtocol {self.security_protocol} needs saslMechanism, saslUsername and "
                "saslPasswordFrom"
            )
        if not sasl and given:
            raise ValueError(f"{', '.join(given)} need a SASL_PLAINTEXT or SASL_SSL securityProtocol")
        if self.ssl_ca_file is not None and not self.security_protocol.endswith("SSL"):
            raise ValueError("sslCaFile needs an SSL or SASL_SSL securityProtocol")
        return self


class HiveEndpoint(Spec):
    host: str
    port: int = Field(default=10000, gt=0, lt=65536)
    database_prefix: str = ""
    auth: Literal["NOSASL", "NONE", "LDAP", "CUSTOM"] = Field(
        default="NOSASL",
        description="HiveServer2 authentication: NOSASL, NONE (SASL PLAIN, no password), LDAP or "
        "CUSTOM (SASL PLAIN with username and passwordFrom). KERBEROS is not supported.",
    )
    username: str | None = None
    password_from: str | None = Field(default=None, description=REF_HELP + " LDAP and CUSTOM only.")
    metastore_uri: str | None = Field(
        default=None,
        description="thrift://host:port of the Hive metastore behind the Thrift Server. When set, a "
        "pass reads each database's tables and views in bulk from the metastore's Thrift API (2 calls "
        "per database) instead of Spark's SHOW TABLE EXTENDED text; changes still go through SQL.",
    )

    @field_validator("metastore_uri")
    @classmethod
    def _metastore(cls, v: str | None) -> str | None:
        if v is not None:
            ids.parse_metastore_uri(v)
        return v

    @field_validator("database_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not ids.HIVE_IDENT_RE.fullmatch(v):
            raise ValueError(f"invalid database prefix {v!r}: must match [a-z_][a-z0-9_]*")
        return v

    @field_validator("password_from")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return check_secret_ref(v, "passwordFrom")

    @model_validator(mode="after")
    def _auth(self) -> HiveEndpoint:
        with_password = self.auth in ("LDAP", "CUSTOM")
        if with_password and (self.username is None or self.password_from is None):
            raise ValueError(f"auth {self.auth} needs username and passwordFrom")
        if not with_password and self.password_from is not None:
            raise ValueError(f"passwordFrom is only used with auth LDAP or CUSTOM, not {self.auth}")
        return self


class PrestoEndpoint(Spec):
    host: str
    port: int = Field(default=8080, gt=0, lt=65536)
    catalog: str = "hive"
    username: str = "pipectl"
    https: bool = Field(default=False, description="Talk to the coordinator over HTTPS.")
    password_from: str | None = Field(
        default=None, description=REF_HELP + " HTTP Basic auth, HTTPS only."
    )
    ssl_ca_file: str | None = Field(default=None, description="PEM CA bundle on the controller host (HTTPS).")

    @field_validator("password_from")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return check_secret_ref(v, "passwordFrom")

    @model_validator(mode="after")
    def _tls(self) -> PrestoEndpoint:
        if not self.https and self.password_from is not None:
            raise ValueError("passwordFrom needs https: true (a password is never sent in clear text)")
        if not self.https and self.ssl_ca_file is not None:
            raise ValueError("sslCaFile needs https: true")
        return self


def _http_url(v: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
        raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
    return v


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http:// or https:// URL (a Prometheus server, a schema registry)."""


class PrometheusEndpoint(Spec):
    """Where canaryComparison ``providers`` of type ``prometheus`` send their PromQL
    (``controller.adapters.prometheus.PrometheusClient``)."""

    url: HttpUrl = Field(description="The server's base URL, e.g. http://127.0.0.1:9090.")


REGISTRY_TOKEN_ENV = "PIPECTL_SCHEMA_REGISTRY_TOKEN"  # noqa: S105 (a variable's name, not a secret)
"""Where a job the controller starts finds the registry token (``controller.jobkit.wire.TOKEN_ENV``)."""


class SchemaRegistryEndpoint(Spec):
    """The Confluent-compatible registry the streaming jobs this stage starts read writer schemas from."""

    url: HttpUrl = Field(
        description="Base URL of the registry as the jobs reach it, e.g. pipectl's own "
        "http://127.0.0.1:8088/schema-registry. A job whose first source topic has a valueSchema gets "
        "--schema-registry URL --subject <topic>-value, and the controller's read-only registry token "
        "in its environment (never in its arguments)."
    )


class AirflowEndpoint(Spec):
    url: str
    username: str = "admin"
    password_from: str = Field(
        default="env:PIPECTL_AIRFLOW_PASSWORD",
        description="Where the password comes from: env:VAR or file:PATH. Never inline.",
    )
    dags_folder: str | None = Field(default=None, description="Local DAG folder deployer target.")

    @field_validator("password_from")
    @classmethod
    def _secret_ref(cls, v: str) -> str:
        check_secret_ref(v, "passwordFrom")
        return v


SPARK_RUNNERS = ("sparkSubmit", "sparkOperator")
"""``sparkSubmit``: ``master``/``deployMode`` pick ``LocalRunner`` or ``StandaloneRunner``.
``sparkOperator``: each job is a kubeflow spark-operator ``SparkApplication`` object
(``controller.adapters.spark_operator.SparkOperatorRunner``), set by ``sparkOperator``."""
_MEMORY_RE = re.compile(r"\A[1-9][0-9]*[kmgt]?\Z")


class SparkPodResources(Spec):
    """A Spark pod's cores and memory (``SparkApplication`` ``spec.driver``/``spec.executor``)."""

    cores: int = Field(default=1, ge=1, description="CPU cores of the pod's JVM.")
    memory: str = Field(default="512m", description="JVM heap, e.g. 512m or 2g.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        if not _MEMORY_RE.fullmatch(v):
            raise ValueError(f"memory {v!r} must be a Spark size such as 512m or 2g")
        return v


class SparkExecutorResources(SparkPodResources):
    """Executors: how many, and each one's cores and memory (``spec.executor``)."""

    instances: int = Field(default=1, ge=1, description="Number of executors (spark.executor.instances).")


class SparkOperatorSpec(Spec):
    """Where and how ``SparkApplication`` objects run (``runner: sparkOperator``)."""

    namespace: ResourceName = Field(
        description="Namespace of the SparkApplication objects (and the driver pods)."
    )
    image: str = Field(
        min_length=1,
        description="Image of driver and executors: pyspark, pipectl's controller.jobkit and the "
        "release repository's files under appRoot.",
    )
    service_account: ResourceName = Field(
        description="The driver pod's service account (it creates executor pods)."
    )
    spark_version: str = Field(min_length=1, description="The image's Spark version (spec.sparkVersion).")
    app_root: str = Field(
        default="/opt/pipectl/repo",
        description="Absolute path of the release repository in the image: a job's entrypoint runs as "
        "local://<appRoot>/<entrypoint>.",
    )
    driver: SparkPodResources = Field(default_factory=SparkPodResources)
    executor: SparkExecutorResources = Field(default_factory=SparkExecutorResources)
    on_failure_retries: int = Field(
        default=10, ge=0,
        description="restartPolicy OnFailure: how often the operator reruns a failed driver (and retries a "
        "failed submission) before the application is FAILED and the controller's next pass starts it again.",
    )

    @field_validator("app_root")
    @classmethod
    def _app_root(cls, v: str) -> str:
        if not v.startswith("/") or ".." in v.split("/") or any(ord(c) < 33 for c in v):
            raise ValueError(f"appRoot {v!r} must be an absolute path without '..' or spaces")
        return v.rstrip("/") or "/"


SPARK_DEPLOY_MODES = ("client", "cluster")
"""``client``: ``LocalRunner`` supervises the driver as its own spark-submit child. ``cluster``:
the driver runs on a Spark standalone cluster (``spark://`` master), submitted and tracked by
``controller.adapters.spark_standalone.StandaloneRunner``; other cluster managers are not driven."""


class SparkEndpoint(Spec):
    master: str = Field(default="local[2]", description="spark-submit --master.")
    deploy_mode: str = Field(
        default="client",
        description="client (a local spark-submit per job) or cluster (supervised drivers on the "
        "spark://host:port standalone master, through its REST submission server).",
        json_schema_extra={"enum": list(SPARK_DEPLOY_MODES)},
    )
    conf: SparkConf = Field(
        default_factory=dict,
        description="Spark conf for every streaming job of this environment; a job's own conf and the "
        "stage's rollout.overrides conf win over it.",
    )
    checkpoint_root: str | None = Field(
        default=None,
        description="Absolute path or URI (e.g. hdfs://nn/ckpt) under which each job gets "
        "<root>/<stage>/<release>/<job>[/<version>]; default: the controller's state directory.",
    )
    runner: str = Field(
        default="sparkSubmit",
        description="sparkSubmit (master and deployMode choose a local or standalone spark-submit) or "
        "sparkOperator (a kubeflow spark-operator SparkApplication per job, see sparkOperator).",
        json_schema_extra={"enum": list(SPARK_RUNNERS)},
    )
    spark_operator: SparkOperatorSpec | None = Field(
        default=None, description="The SparkApplication settings; required by, and only used with, "
        "runner: sparkOperator."
    )

    @field_validator("deploy_mode")
    @classmethod
    def _deploy_mode(cls, v: str, info: ValidationInfo) -> str:
        if v not in SPARK_DEPLOY_MODES:
            raise ValueError(
                f"deployMode {v!r} is not supported: pipectl runs streaming jobs with deployMode "
                f"{' or '.join(SPARK_DEPLOY_MODES)}"
            )
        master = str(info.data.get("master", ""))
        if v == "cluster" and not master.startswith("spark://"):
            raise ValueError(
                f"deployMode 'cluster' needs a Spark standalone master (spark://host:port), not "
                f"{master!r}: pipectl drives no other cluster manager"
            )
        return v

    @field_validator("checkpoint_root")
    @classmethod
    def _checkpoint_root(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not (v.startswith("/") or re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", v)) or any(
            ord(c) < 32 for c in v
        ):
            raise ValueError(
                f"checkpointRoot {v!r} must be an absolute path or a URI such as hdfs://namenode/checkpoints"
            )
        return v.rstrip("/") or "/"

    @field_validator("runner")
    @classmethod
    def _runner(cls, v: str) -> str:
        if v not in SPARK_RUNNERS:
            raise ValueError(f"runner {v!r} is not supported: use {' or '.join(SPARK_RUNNERS)}")
        return v

    @model_validator(mode="after")
    def _operator(self) -> SparkEndpoint:
        if self.runner == "sparkOperator":
            if self.spark_operator is None:
                raise ValueError("runner sparkOperator needs a sparkOperator section (namespace, image, "
                                 "serviceAccount, sparkVersion)")
            given = [a for f, a in (("master", "master"), ("deploy_mode", "deployMode"))
                     if f in self.model_fields_set]
            if given:
                what = "are spark-submit settings" if len(given) > 1 else "is a spark-submit setting"
                raise ValueError(f"{' and '.join(given)} {what}: with runner sparkOperator the operator "
                                 "runs every driver in cluster mode")
        elif self.spark_operator is not None:
            raise ValueError("sparkOperator is only used with runner: sparkOperator")
        return self


REGISTRY_HELP = (
    "Hand this registry to the streaming jobs the controller starts (writer schemas per record); "
    "unset: jobs decode with their reader schema only."
)


class _EnvironmentEndpoints(Protocol):
    @property
    def canary_of(self) -> str | None: ...
    @property
    def spark(self) -> SparkEndpoint | None: ...
    @property
    def schema_registry(self) -> SchemaRegistryEndpoint | None: ...


_Env = TypeVar("_Env", bound=_EnvironmentEndpoints)


def check_environment_endpoints(env: _Env) -> _Env:
    """An Environment's endpoints taken together (``EnvironmentSpec``'s validator): a stage of its
    own defines every backend; the registry token is handed to spark-submit jobs only."""
    if env.canary_of is None:
        missing = [k for k in ("kafka", "hive", "presto", "airflow", "spark") if getattr(env, k) is None]
        if missing:
            raise ValueError("an environment without canaryOf must define " + ", ".join(missing))
    if env.schema_registry is not None and env.spark is not None and env.spark.runner == "sparkOperator":
        raise ValueError(
            "schemaRegistry is not handed to runner sparkOperator jobs: their environment would be a "
            "Kubernetes object, and the registry token is never written down"
        )
    return env
