"""A small Prometheus HTTP API client: instant PromQL queries for canary analysis.

``query`` calls ``GET /api/v1/query`` and returns the result as ``(labels, value)`` pairs: a
vector gives one pair per series, a scalar one pair with no labels. Errors are pipectl's tree: no
connection, a timeout, HTTP 5xx or 503 are transient (the gate is evaluated again later); HTTP 400
or 422 (``bad_data``: a PromQL syntax error, ``execution``: a query the server refuses) are
permanent. A matrix or string result is permanent too: the analysis compares numbers.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import requests

from controller.adapters.base import CallStats
from controller.model.errors import PermanentBackendError, TransientBackendError

BACKEND = "prometheus"

Sample = tuple[dict[str, str], float]


class PrometheusClient:
    """One Prometheus server at ``url`` (e.g. ``http://127.0.0.1:9090``)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.stats = CallStats()
        self._session = requests.Session()

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate ``promql`` at ``at`` (default: the server's now)."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        self.stats.count("query")
        try:
            resp = self._session.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout)
        except requests.RequestException as e:
            raise TransientBackendError(BACKEND, f"{self.url}: {type(e).__name__}: {e}") from None
        try:
            body: dict[str, Any] = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientBackendError(
                BACKEND, f"HTTP {resp.status_code}: {body.get('error', resp.text[:200])}"
            )
        if resp.status_code != 200 or body.get("status") != "success":
            raise PermanentBackendError(
                BACKEND,
                f"query {promql!r}: {body.get('errorType', resp.status_code)}: {body.get('error', '')}",
            )
        return parse_result(promql, body.get("data", {}))

    def close(self) -> None:
        self._session.close()


def parse_result(promql: str, data: dict[str, Any]) -> list[Sample]:
    """``(labels, value)`` pairs of an instant query's ``data`` (NaN values are left out)."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list):
        pairs: list[tuple[dict[str, str], Any]] = [({}, result[1])]
    elif kind == "vector" and isinstance(result, list):
        pairs = [(dict(r.get("metric", {})), r.get("value", [0, "NaN"])[1]) for r in result]
    else:
        raise PermanentBackendError(BACKEND, f"query {promql!r} returned a {kind}, not a vector or a scalar")
    out = []
    for labels, text in pairs:
        value = float(text)
        if not math.isnan(value):
            out.append((labels, value))
    return out
