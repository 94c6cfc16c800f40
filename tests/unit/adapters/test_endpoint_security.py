"""An Environment's security settings reach the client libraries (``controller.wiring`` builds the
adapters): Kafka SASL/TLS into librdkafka's config, Presto HTTPS + Basic auth + CA into pyhive,
Hive LDAP into the SASL PLAIN client; the secret values never show in a repr, a log line or an
error message."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from controller.adapters import hive_thrift, kafka
from controller.adapters import presto as presto_mod
from controller.model.endpoints import HiveEndpoint, KafkaEndpoint, PrestoEndpoint
from controller.model.errors import ConfigurationError
from controller.model.manifest import Environment
from controller.obs.logging import configure_logging, get_logger
from controller.plan.desired import StageContext
from controller.wiring import Wiring, kafka_security, presto_client, stage_secret

KAFKA_PW = "kafka-pw-19Qa"
PRESTO_PW = "presto-pw-77Zb"
HIVE_PW = "hive-ldap-pw-31Xc"
AIRFLOW_PW = "airflow-pw-55Yd"


@pytest.fixture(autouse=True)
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "hive").write_text(HIVE_PW)
    monkeypatch.setenv("PIPECTL_SECRETS_DIR", str(d))
    monkeypatch.setenv("PIPECTL_SECRET_KAFKA", KAFKA_PW)
    monkeypatch.setenv("PIPECTL_SECRET_PRESTO", PRESTO_PW)
    monkeypatch.setenv("PIPECTL_AIRFLOW_PASSWORD", AIRFLOW_PW)
    monkeypatch.delenv("PIPECTL_SECRET_ENV_ALLOW", raising=False)
    return d


@pytest.fixture
def admin_configs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_admin(conf: dict[str, Any], **_kw: Any) -> Any:
        seen.append(dict(conf))
        return SimpleNamespace()

    monkeypatch.setattr(kafka, "AdminClient", fake_admin)
    return seen


KAFKA = {
    "bootstrapServers": "broker:9093",
    "securityProtocol": "SASL_SSL",
    "saslMechanism": "SCRAM-SHA-512",
    "saslUsername": "pipectl",
    "saslPasswordFrom": "env:PIPECTL_SECRET_KAFKA",
    "sslCaFile": "/etc/pipectl/kafka-ca.pem",
}
PRESTO = {
    "host": "presto",
    "port": 8443,
    "username": "pipectl",
    "https": True,
    "passwordFrom": "env:PIPECTL_SECRET_PRESTO",
    "sslCaFile": "/etc/pipectl/presto-ca.pem",
}
HIVE = {"host": "thrift", "auth": "LDAP", "username": "pipectl", "passwordFrom": "file:hive"}


def test_kafka_sasl_and_tls_reach_librdkafka(admin_configs: list[dict[str, Any]]) -> None:
    security = kafka_security("prod", KafkaEndpoint.model_validate(KAFKA))
    adapter = kafka.KafkaAdapter("broker:9093", security=security)
    [conf] = admin_configs
    assert conf["bootstrap.servers"] == "broker:9093"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512" and conf["sasl.username"] == "pipectl"
    assert conf["sasl.password"] == KAFKA_PW
    assert conf["ssl.ca.location"] == "/etc/pipectl/kafka-ca.pem"
    assert KAFKA_PW not in repr(adapter.security) and KAFKA_PW not in repr(vars(adapter))


def test_plaintext_kafka_stays_plaintext(admin_configs: list[dict[str, Any]]) -> None:
    kafka.KafkaAdapter("b:9092", security=kafka_security("dev", KafkaEndpoint(bootstrap_servers="b:9092")))
    assert admin_configs[0]["security.protocol"] == "PLAINTEXT"
    assert not any(k.startswith("sasl") for k in admin_configs[0])


def test_presto_https_basic_auth_and_ca_reach_pyhive(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Cursor:
        _requests_kwargs: dict[str, Any] = {}

        def execute(self, sql: str) -> None:
            pass

        def poll(self) -> None:
            return None

        def fetchall(self) -> list[Any]:
            return [[1]]

    def connect(**kw: Any) -> Any:
        seen.update(kw)
        return SimpleNamespace(cursor=Cursor)

    monkeypatch.setattr(presto_mod.presto, "connect", connect)
    client = presto_client("prod", PrestoEndpoint.model_validate(PRESTO))
    assert client.query("SELECT 1") == [(1,)]
    assert seen["protocol"] == "https" and seen["port"] == 8443 and seen["username"] == "pipectl"
    assert seen["password"] == PRESTO_PW
    assert seen["requests_kwargs"]["verify"] == "/etc/pipectl/presto-ca.pem"
    assert PRESTO_PW not in repr(vars(client))


def test_hive_ldap_password_reaches_the_sasl_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.adapters.hive import HiveAdapter

    seen: dict[str, Any] = {}

    def sasl(**kw: Any) -> str:
        seen.update(kw)
        return "sasl-client"

    class Transport:
        def __init__(self, factory: Any, mechanism: str, sock: Any) -> None:
            seen["client"], seen["mechanism"] = factory(), mechanism

    import thrift_sasl

    monkeypatch.setattr(hive_thrift.hive, "get_installed_sasl", sasl)
    monkeypatch.setattr(thrift_sasl, "TSaslClientTransport", Transport)
    monkeypatch.setattr(hive_thrift.hive, "connect", lambda **kw: SimpleNamespace(kw=kw))
    ep = HiveEndpoint.model_validate(HIVE)
    adapter = HiveAdapter(
        ep.host, ep.port, auth=ep.auth, username=ep.username,
        password=stage_secret("prod", "hive.passwordFrom", str(ep.password_from)),
    )
    adapter._connection()
    assert seen["mechanism"] == "PLAIN" and seen["sasl_auth"] == "PLAIN"
    assert seen["username"] == "pipectl" and seen["password"] == HIVE_PW
    assert HIVE_PW not in repr(vars(adapter))


def test_wiring_builds_every_adapter_with_its_security(
    tmp_path: Path, admin_configs: list[dict[str, Any]]
) -> None:
    env = Environment.model_validate(
        {
            "apiVersion": "pipectl.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "prod"},
            "spec": {
                "kafka": KAFKA,
                "hive": HIVE,
                "presto": PRESTO,
                "airflow": {"url": "http://airflow:8080", "dagsFolder": str(tmp_path / "dags")},
                "spark": {"master": "local[1]"},
            },
        }
    )
    be = Wiring(state_dir=tmp_path / "state").backends(StageContext(stage="prod", spec=env.spec))
    assert admin_configs[-1]["sasl.password"] == KAFKA_PW
    assert be.presto.https and be.presto.password is not None and be.presto.password.reveal() == PRESTO_PW
    assert be.hive.password is not None and be.hive.password.reveal() == HIVE_PW
    assert be.hive.presto is be.presto


def test_stages_share_adapters_unless_their_security_differs(
    tmp_path: Path, admin_configs: list[dict[str, Any]]
) -> None:
    def ctx(stage: str, prefix: str, kafka: dict[str, Any]) -> StageContext:
        spec = {
            "kafka": {**kafka, "topicPrefix": prefix},
            "hive": {"host": "thrift", "databasePrefix": prefix.rstrip(".") + "_"},
            "presto": {"host": "presto"},
            "airflow": {"url": "http://airflow:8080", "dagsFolder": str(tmp_path / stage)},
            "spark": {"master": "local[1]"},
        }
        env = Environment.model_validate(
            {"apiVersion": "pipectl.dev/v1alpha1", "kind": "Environment", "metadata": {"name": stage}, "spec": spec}
        )
        return StageContext(stage=stage, spec=env.spec)

    wiring = Wiring(state_dir=tmp_path / "state")
    dev = wiring.backends(ctx("dev", "dev.", KAFKA))
    assert wiring.backends(ctx("staging", "staging.", KAFKA)) is dev  # prefixes only: one set, one runner
    other = {**KAFKA, "saslPasswordFrom": "env:PIPECTL_SECRET_KAFKA_PROD"}
    with pytest.raises(ConfigurationError, match=r"stage prod: spec\.kafka\.saslPasswordFrom: .*not set"):
        wiring.backends(ctx("prod", "prod.", other))


def test_a_refused_reference_names_the_stage_and_field() -> None:
    with pytest.raises(ConfigurationError) as e:
        stage_secret("prod", "airflow.passwordFrom", "env:PIPECTL_API_TOKEN")
    assert str(e.value).startswith("stage prod: spec.airflow.passwordFrom: secret reference refused: ")


def test_resolved_secrets_never_reach_the_logs() -> None:
    stage_secret("prod", "hive.passwordFrom", "file:hive")  # registers the file's content
    saved = structlog.get_config()
    buf = io.StringIO()
    configure_logging(json=True, stream=buf)
    try:
        get_logger("t").error("bind failed", error=f"LDAP bind as pipectl/{HIVE_PW} refused", kafka=KAFKA_PW)
    finally:
        structlog.configure(**saved)
    line = json.loads(buf.getvalue().splitlines()[-1])
    assert HIVE_PW not in buf.getvalue() and KAFKA_PW not in buf.getvalue()
    assert line["error"] == "LDAP bind as pipectl/[REDACTED] refused"


def test_the_dag_sidecar_never_carries_repo_credentials() -> None:
    from controller.wiring import _public_url

    assert _public_url("https://bob:tok3n@git.example.com/o/r.git") == "https://git.example.com/o/r.git"
    assert _public_url("https://ghp_abc@github.com/o/r") == "https://github.com/o/r"
    assert _public_url("ssh://git:pw@host/r") == "ssh://git@host/r"
    assert _public_url("ssh://git@host:22/r") == "ssh://git@host:22/r"
