"""Structured logging: one JSON object per line, with the run's context bound and secrets redacted.

Every record carries ``timestamp`` (ISO 8601, UTC), ``level``, ``logger`` and ``event``, plus
whatever is bound in the current context (``run_id``, ``release``, ``stage`` …). Libraries that log
through the standard ``logging`` module (kafka, kubernetes, sqlalchemy) go through the same
processors, so their records are JSON and redacted too.

Usage::

    configure_logging()                      # once, at process start
    log = get_logger(__name__)
    with bind_run(run_id, release="host-metrics", stage="dev"):
        log.info("plan_applied", actions=3)

Context lives in ``contextvars``: a worker thread does not inherit it, so wrap what you hand to a
thread pool in :func:`propagate_context`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, ParamSpec, TextIO, TypeVar

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "bind_run",
    "bound_context",
    "configure_logging",
    "get_logger",
    "propagate_context",
    "redact",
    "redact_secrets",
    "register_secret",
]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|token|secret|authorization|api[_-]?key|credential|private[_-]?key",
    re.IGNORECASE,
)
_SECRET_ENV = re.compile(r"\APIPECTL_\w*(PASSWORD|TOKEN|SECRET)\w*\Z")
# Where secrets live, or which names may hold one, is not itself secret (PIPECTL_SECRETS_DIR's path
# redacted made a missing secret file's error unreadable).
_NOT_SECRET_ENV = re.compile(r"\A\w*_(DIR|FILE|PATH|ALLOW)\Z")
# Shorter values would redact ordinary words and digits all over the logs.
_MIN_SECRET_LEN = 4
_INLINE_SECRETS = (
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    # user:password@ in URLs (a PostgreSQL state URL, an Airflow URL with credentials)
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)

_HANDLER_MARK = "_pipectl_handler"
# ProcessorFormatter's own keys (the LogRecord of a stdlib record): passed through untouched.
_META_KEYS = frozenset({"_record", "_from_structlog"})

P = ParamSpec("P")
R = TypeVar("R")


# Values resolved from secret references (``controller.source.secrets_policy``): a file's content
# or an allow-listed variable of any name is redacted like a PIPECTL_*PASSWORD* value.
_REGISTERED: set[str] = set()


def register_secret(value: str) -> None:
    """Redact ``value`` wherever it appears from now on (logs, events, status, audit messages)."""
    if len(value) >= _MIN_SECRET_LEN:
        _REGISTERED.add(value)


def _secret_env_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    return bool(_SECRET_ENV.fullmatch(name)) and not _NOT_SECRET_ENV.fullmatch(name)


_env_seen: tuple[dict[Any, Any], frozenset[str], list[str]] | None = None


def _secret_env_values() -> list[str]:
    """The secret values to hide, longest first (one secret may contain another). Recomputed only
    when the environment or the registered secrets changed: every pass redacts each release's
    messages, and reading ``os.environ`` decodes every variable (~0.3 ms a call)."""
    global _env_seen
    raw = getattr(os.environ, "_data", None)  # CPython's undecoded mapping: a copy compares in C
    seen = _env_seen
    if isinstance(raw, dict) and seen is not None and seen[1] == _REGISTERED and seen[0] == raw:
        return seen[2]
    values = {v for k, v in os.environ.items() if len(v) >= _MIN_SECRET_LEN and _secret_env_name(k)}
    values |= _REGISTERED
    out = sorted(values, key=len, reverse=True)
    if isinstance(raw, dict):
        _env_seen = (dict(raw), frozenset(_REGISTERED), out)
    return out


def _redact_str(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, repl in _INLINE_SECRETS:
        text = pattern.sub(repl, text)
    return text


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _redact_str(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    # Anything else is rendered by its repr anyway; redact what that repr would show.
    return _redact_str(repr(value), secrets)


def redact(value: Any) -> Any:
    """``value`` with secrets hidden by the same rules as :func:`redact_secrets`."""
    return _redact(value, _secret_env_values())


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide secrets by key name, by known value, and inline credentials.

    * the value of any key named like password/token/secret/authorization/api_key, at any depth;
    * any occurrence of the value of a ``PIPECTL_*PASSWORD*``/``*TOKEN*``/``*SECRET*`` environment
      variable, or of a secret registered with :func:`register_secret`, inside a string
      (exception text included: run it after ``format_exc_info``);
    * ``Bearer …``/``Basic …`` credentials and ``user:password@`` in URLs.
    """
    secrets = _secret_env_values()
    return {
        k: v if k in _META_KEYS else REDACTED if _SECRET_KEY.search(k) else _redact(v, secrets)
        for k, v in event_dict.items()
    }


_LEADING_KEYS = ("timestamp", "level", "logger", "event", "run_id", "release", "stage")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Put the keys people scan for at the start of each line."""
    head = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    return {**head, **{k: v for k, v in event_dict.items() if k not in head}}


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


class _Stderr:
    """Whatever ``sys.stderr`` is when a record is written (a test runner may swap it per call)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(json: bool = True, level: str = "info", *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard ``logging`` module through one handler on ``stream``.

    ``json=False`` renders for people (``pipectl`` run in a terminal). Calling it again replaces
    the previous configuration; ``stream`` defaults to stderr.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")

    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(stream if stream is not None else _Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _leading_keys_first,
                renderer,
            ],
        )
    )
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger whose records carry ``logger=name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


bound_context = structlog.contextvars.bound_contextvars
"""Bind keys to every record logged inside the ``with`` block (and restore them after)."""


@contextmanager
def bind_run(run_id: str, release: str | None = None, stage: str | None = None) -> Iterator[None]:
    """Bind a reconcile run's ``run_id`` (and release/stage when known) for the ``with`` block."""
    keys: dict[str, Any] = {"run_id": run_id}
    if release is not None:
        keys["release"] = release
    if stage is not None:
        keys["stage"] = stage
    with structlog.contextvars.bound_contextvars(**keys):
        yield


def propagate_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the caller's context (bound log keys included).

    ``executor.submit(propagate_context(apply_one), action)`` keeps run_id/release/stage on the
    worker thread's records.
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return run
