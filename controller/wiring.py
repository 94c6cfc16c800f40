"""The composition root: the one place that picks concrete adapters for a stage."""

from __future__ import annotations

import os
from pathlib import Path

from controller.model.errors import PipectlError


def resolve_secret(ref: str) -> str:
    """Resolve ``env:VAR`` or ``file:/path``; never log the value."""
    if ref.startswith("env:"):
        var = ref[4:]
        value = os.environ.get(var)
        if value is None:
            if var == "PIPECTL_AIRFLOW_PASSWORD":
                return "admin"  # the local stack's documented default
            raise PipectlError(f"secret {ref}: environment variable {var} is not set")
        return value
    if ref.startswith("file:"):
        return Path(ref[5:]).read_text().strip()
    raise PipectlError(f"secret reference {ref!r} must be env:VAR or file:/path")
