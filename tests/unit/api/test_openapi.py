"""The OpenAPI document lists the error statuses the handlers really answer, with the error body's
schema, no 422 (bad requests are 400) and the bearer scheme on every operation but /healthz and /readyz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apikit import APPROVE, World, auth

from controller.api.openapi import error_statuses


def _doc(w: World) -> dict[str, Any]:
    r = w.client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def test_error_statuses_and_security(repo: Path, tmp_path: Path) -> None:
    doc = _doc(World(repo, tmp_path))
    assert "ErrorBody" in doc["components"]["schemas"] and "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert "422" not in codes, (method, path)
            assert {"400", "413", "503"} <= codes, (method, path)
            probe = (method, path) in {("get", "/healthz"), ("get", "/readyz")}
            assert ("401" in codes) != probe, (method, path)
            assert ("security" in op) != probe, (method, path)
            if "{name}" in path:
                assert "404" in codes, (method, path)
    approve = doc["paths"]["/api/v1/releases/{name}/approve"]["post"]["responses"]
    assert {"403", "409"} <= set(approve) and "501" not in approve
    assert approve["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "501" in doc["paths"]["/api/v1/releases/{name}/rollback"]["post"]["responses"]
    assert error_statuses("get", "/api/v1/releases") == [400, 401, 413, 503]


def test_answered_error_statuses_are_documented(repo: Path, tmp_path: Path) -> None:
    w = World(repo, tmp_path)
    doc = _doc(w)

    def documented(method: str, path: str, status: int) -> bool:
        return str(status) in doc["paths"][path][method]["responses"]

    cases = [
        ("get", "/api/v1/releases", "/api/v1/releases", {}, None, 401),
        ("get", "/api/v1/releases/{name}", "/api/v1/releases/nope", auth(w.bob), None, 404),
        ("post", "/api/v1/releases/{name}/approve", APPROVE, auth(w.bob), {"stage": "prod"}, 400),
        ("post", "/api/v1/releases/{name}/approve", APPROVE, auth(w.bob), {"stage": "prod", "version": "1.0.0"}, 403),
        ("post", "/api/v1/releases/{name}/approve", APPROVE, auth(w.alice), {"stage": "prod", "version": "9.9.9"}, 409),
    ]
    for method, template, url, headers, body, want in cases:
        r = w.client.request(method.upper(), url, headers=headers, json=body)
        assert r.status_code == want, (url, r.text)
        assert set(r.json()) <= {"error", "code", "reason"} and r.json()["code"] == want
        assert documented(method, template, want), (method, template, want)
