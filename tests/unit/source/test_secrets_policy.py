"""Secret references (``controller.source.secrets_policy``): only allow-listed variables and files
under the secrets directory, reported at the Environment's file, line and field; no default
passwords; resolved values are redacted from then on. The endpoint models refuse what the adapters
cannot do (``controller.model.endpoints``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.model.endpoints import HiveEndpoint, KafkaEndpoint, PrestoEndpoint
from controller.model.errors import ConfigurationError
from controller.obs.logging import redact
from controller.source.secrets_policy import check_ref, resolve_secret
from controller.source.validate import load_repo

ENV = "environments/dev.yaml"
DEFAULT_REF = "passwordFrom: env:PIPECTL_AIRFLOW_PASSWORD"


@pytest.fixture(autouse=True)
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("PIPECTL_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("PIPECTL_SECRET_ENV_ALLOW", raising=False)
    return secrets


def env_problems(repo: Path, ref: str) -> list[str]:
    path = repo / ENV
    path.write_text(path.read_text().replace(DEFAULT_REF, f"passwordFrom: {ref}"))
    return [str(p) for p in load_repo(repo).problems]


def test_the_controllers_own_token_cannot_be_named(repo: Path) -> None:
    assert env_problems(repo, "env:PIPECTL_API_TOKEN") == [
        f"{ENV}:20: spec.airflow.passwordFrom: env:PIPECTL_API_TOKEN is one of the controller's own "
        "settings; it is never sent to an endpoint"
    ]


def test_an_arbitrary_variable_is_refused(repo: Path) -> None:
    assert env_problems(repo, "env:HOME") == [
        f"{ENV}:20: spec.airflow.passwordFrom: env:HOME is not an allowed secret variable "
        "(allowed: PIPECTL_SECRET_*, PIPECTL_AIRFLOW_PASSWORD; extend the list with PIPECTL_SECRET_ENV_ALLOW)"
    ]


def test_allowed_variables(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_problems(repo, "env:PIPECTL_SECRET_AIRFLOW_DEV") == []
    monkeypatch.setenv("PIPECTL_SECRET_ENV_ALLOW", "AIRFLOW_*, VAULT_PW")
    assert check_ref("env:AIRFLOW_DEV_PASSWORD") is None and check_ref("env:VAULT_PW") is None
    assert check_ref("env:PIPECTL_AIRFLOW_PASSWORD") is not None  # the list replaces the default
    monkeypatch.setenv("PIPECTL_SECRET_ENV_ALLOW", "*")
    assert check_ref("env:PIPECTL_API_TOKEN") is not None  # never, whatever the list says
    assert check_ref("env:PIPECTL_STATE") is not None


def test_files_outside_the_secrets_dir_are_refused(repo: Path, policy: Path, tmp_path: Path) -> None:
    assert env_problems(repo, "file:/etc/passwd") == [
        f"{ENV}:20: spec.airflow.passwordFrom: file:/etc/passwd is outside the secrets directory {policy} "
        "(set PIPECTL_SECRETS_DIR)"
    ]
    assert check_ref("file:../outside") == "file:../outside must not contain '..'"
    assert check_ref(f"file:{policy}/../x") is not None
    (tmp_path / "elsewhere").write_text("x")
    (policy / "link").symlink_to(tmp_path / "elsewhere")
    assert "outside the secrets directory" in str(check_ref("file:link"))
    (policy / "airflow").write_text("pw")
    assert check_ref("file:airflow") is None and check_ref(f"file:{policy}/airflow") is None


def test_no_default_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_AIRFLOW_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match=r"PIPECTL_AIRFLOW_PASSWORD is not set \(pipectl has no default"):
        resolve_secret("env:PIPECTL_AIRFLOW_PASSWORD")
    with pytest.raises(ConfigurationError, match="refused: env:PIPECTL_API_TOKEN"):
        resolve_secret("env:PIPECTL_API_TOKEN")


def test_a_resolved_file_secret_is_redacted_from_then_on(policy: Path) -> None:
    (policy / "hive").write_text("  ldap-pw-4471  \n")
    secret = resolve_secret("file:hive")
    assert secret.reveal() == "ldap-pw-4471"
    assert "ldap-pw-4471" not in repr(secret) and "ldap-pw-4471" not in str(secret)
    assert redact("bind failed for ldap-pw-4471") == "bind failed for [REDACTED]"


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (HiveEndpoint, {"host": "h", "auth": "KERBEROS"}, "Input should be 'NOSASL', 'NONE', 'LDAP' or 'CUSTOM'"),
        (HiveEndpoint, {"host": "h", "auth": "LDAP", "username": "u"}, "auth LDAP needs username and passwordFrom"),
        (HiveEndpoint, {"host": "h", "passwordFrom": "env:PIPECTL_SECRET_H"}, "only used with auth LDAP or CUSTOM"),
        (PrestoEndpoint, {"host": "h", "passwordFrom": "env:PIPECTL_SECRET_P"}, "passwordFrom needs https: true"),
        (PrestoEndpoint, {"host": "h", "sslCaFile": "/ca.pem"}, "sslCaFile needs https: true"),
        (KafkaEndpoint, {"bootstrapServers": "b", "securityProtocol": "SASL_SSL"}, "needs saslMechanism"),
        (KafkaEndpoint, {"bootstrapServers": "b", "saslUsername": "u"}, "saslUsername need a SASL_PLAINTEXT"),
        (KafkaEndpoint, {"bootstrapServers": "b", "sslCaFile": "/ca.pem"}, "sslCaFile needs an SSL"),
        (
            KafkaEndpoint,
            {"bootstrapServers": "b", "securityProtocol": "SASL_SSL", "saslMechanism": "PLAIN",
             "saslUsername": "u", "saslPasswordFrom": "s3cret"},
            "saslPasswordFrom must be env:VAR or file:PATH",
        ),
    ],
)
def test_endpoint_settings_the_adapters_cannot_use_are_refused(
    model: type[HiveEndpoint | PrestoEndpoint | KafkaEndpoint], fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.model_validate(fields)


def test_every_accepted_hive_auth_is_accepted_by_the_adapter() -> None:
    from controller.adapters.hive import HiveAdapter
    from controller.model.secret import Secret

    for auth in ("NOSASL", "NONE", "LDAP", "CUSTOM"):
        ep = HiveEndpoint.model_validate(
            {"host": "h", "auth": auth}
            | ({"username": "u", "passwordFrom": "env:PIPECTL_SECRET_H"} if auth in ("LDAP", "CUSTOM") else {})
        )
        password = Secret("pw") if ep.password_from else None
        HiveAdapter(ep.host, ep.port, auth=ep.auth, username=ep.username, password=password)
