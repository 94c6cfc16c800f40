"""Which secrets an Environment manifest may name, and resolving them.

An Environment's ``*From`` fields (``controller.model.endpoints.SECRET_REF_FIELDS``) name where a
password comes from. Whoever can commit an Environment chooses both the reference and the endpoint
the password is sent to, so a reference may only name what is meant for that:

- ``env:VAR`` — ``VAR`` matches ``PIPECTL_SECRET_*`` or an entry of ``PIPECTL_SECRET_ENV_ALLOW``
  (comma-separated names, ``PREFIX*`` allowed; default ``PIPECTL_AIRFLOW_PASSWORD``, the local
  stack's documented variable). The controller's own credentials (``PIPECTL_API_TOKEN``, the
  state-store URL, webhook and token secrets) are never allowed, whatever the list says.
- ``file:PATH`` — a file inside the secrets directory (``PIPECTL_SECRETS_DIR``, default
  ``.pipectl/secrets``): a relative ``PATH`` is taken from there; no ``..``; symlinks are
  resolved and must stay inside.

``pipectl validate`` and the controller's repo load report any other reference as
``environments/x.yaml:LINE: spec.airflow.passwordFrom: …`` (``check_environment``, called from
``controller.source.validate``); resolving one anyway (``resolve_secret``, from
``controller.wiring``) is a ``ConfigurationError``. So is an unset variable: pipectl has no
default passwords. A resolved value is registered with the log redactor.

Tests: ``tests/unit/source/test_secrets_policy.py``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Protocol

from controller.model.endpoints import SECRET_REF_FIELDS
from controller.model.errors import ConfigurationError, Problem
from controller.model.secret import Secret
from controller.obs.logging import register_secret

SECRETS_DIR_ENV = "PIPECTL_SECRETS_DIR"
DEFAULT_SECRETS_DIR = ".pipectl/secrets"
ALLOW_ENV = "PIPECTL_SECRET_ENV_ALLOW"
DEFAULT_ALLOW = "PIPECTL_AIRFLOW_PASSWORD"
ALWAYS_ALLOWED = "PIPECTL_SECRET_*"
# The controller's own credentials: never sent to an endpoint a manifest chooses.
NEVER_ALLOWED = (
    "PIPECTL_API_TOKEN*",
    "PIPECTL_STATE*",
    "PIPECTL_WEBHOOK*",
    "PIPECTL_TOKEN*",
    "PIPECTL_EVENTS*",
    ALLOW_ENV,
    SECRETS_DIR_ENV,
)
_VAR = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


class _Loaded(Protocol):
    """What ``check_environment`` needs of ``controller.source.validate.Loaded``."""

    obj: Any

    @property
    def file(self) -> str: ...

    def line(self, *path: str | int) -> int: ...


def allowed_env_patterns() -> list[str]:
    raw = os.environ.get(ALLOW_ENV)
    listed = DEFAULT_ALLOW if raw is None else raw
    return [ALWAYS_ALLOWED] + [p.strip() for p in listed.split(",") if p.strip()]


def secrets_dir() -> Path:
    return Path(os.environ.get(SECRETS_DIR_ENV) or DEFAULT_SECRETS_DIR).expanduser().resolve()


def _env_problem(var: str) -> str | None:
    if not _VAR.fullmatch(var):
        return f"env:{var} does not name an environment variable"
    if any(fnmatch.fnmatchcase(var, p) for p in NEVER_ALLOWED):
        return f"env:{var} is one of the controller's own settings; it is never sent to an endpoint"
    patterns = allowed_env_patterns()
    if not any(fnmatch.fnmatchcase(var, p) for p in patterns):
        return (
            f"env:{var} is not an allowed secret variable (allowed: {', '.join(patterns)}; "
            f"extend the list with {ALLOW_ENV})"
        )
    return None


def _file_path(path: str) -> tuple[Path | None, str | None]:
    """The secret file's path inside the secrets directory, or why it is refused."""
    base = secrets_dir()
    if not path:
        return None, "file: names no file"
    if ".." in Path(path).parts:
        return None, f"file:{path} must not contain '..'"
    full = Path(path) if Path(path).is_absolute() else base / path
    resolved = full.resolve()  # follows symlinks, also of a file that does not exist yet
    if base not in resolved.parents:
        return None, f"file:{path} is outside the secrets directory {base} (set {SECRETS_DIR_ENV})"
    return resolved, None


def check_ref(ref: str) -> str | None:
    """Why the secret reference ``ref`` is refused, or None when it is allowed."""
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in ("env", "file"):
        return f"secret reference {ref!r} must be env:VAR or file:PATH"
    if scheme == "env":
        return _env_problem(rest)
    return _file_path(rest)[1]


def check_environment(loaded: _Loaded) -> list[Problem]:
    """Problems with an Environment's secret references, at the line and field that names them."""
    spec = loaded.obj.spec
    out: list[Problem] = []
    for endpoint, alias, attr in SECRET_REF_FIELDS:
        ref = getattr(getattr(spec, endpoint, None), attr, None)
        msg = check_ref(ref) if isinstance(ref, str) else None
        if msg:
            line = loaded.line("spec", endpoint, alias)
            out.append(Problem(loaded.file, line, f"spec.{endpoint}.{alias}", msg))
    return out


def resolve_secret(ref: str) -> Secret:
    """The secret ``ref`` names (policy checked again here: the controller's own environment
    decides). ``ConfigurationError`` when refused or unset; ``OSError`` when the file is unreadable."""
    problem = check_ref(ref)
    if problem:
        raise ConfigurationError(f"secret reference refused: {problem}")
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(rest)
        if value is None:
            raise ConfigurationError(
                f"secret env:{rest}: environment variable {rest} is not set "
                "(pipectl has no default passwords)"
            )
    else:
        path, _ = _file_path(rest)
        assert path is not None
        value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ConfigurationError(f"secret {ref} is empty")
    register_secret(value)
    return Secret(value)
