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
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from controller.model import identifiers as ids
from controller.model.base import SparkConf, Spec

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
