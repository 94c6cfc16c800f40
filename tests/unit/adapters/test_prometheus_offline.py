"""The Prometheus client offline: how an instant query's result is read, and which errors are
transient. Against the stack's real server: tests/integration/test_prometheus.py."""

from __future__ import annotations

import socket

import pytest

from controller.adapters.prometheus import PrometheusClient, parse_result
from controller.model.errors import PermanentBackendError, TransientBackendError


def test_vector_scalar_and_nan() -> None:
    vector = {"resultType": "vector", "result": [
        {"metric": {"job": "a"}, "value": [1.0, "2.5"]},
        {"metric": {"job": "b"}, "value": [1.0, "NaN"]},
    ]}  # fmt: skip
    assert parse_result("q", vector) == [({"job": "a"}, 2.5)]
    assert parse_result("q", {"resultType": "scalar", "result": [1.0, "3"]}) == [({}, 3.0)]
    assert parse_result("q", {"resultType": "vector", "result": []}) == []
    with pytest.raises(PermanentBackendError, match="returned a matrix"):
        parse_result("q[1m]", {"resultType": "matrix", "result": []})


def test_no_server_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(TransientBackendError, match="prometheus"):
        client.query("up")
    assert client.stats.calls == {"query": 1}
