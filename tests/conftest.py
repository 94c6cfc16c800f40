"""Every test runs without the user's client config (``~/.config/pipectl/config.yaml``): a context
there would change the default --repo/--state/--server of every pipectl the tests start, and a
controller the tests start must not record itself in it. Tests of contexts set their own file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def pytest_configure() -> None:
    home = Path(tempfile.mkdtemp(prefix="pipectl-test-config-"))
    os.environ["PIPECTL_CONFIG"] = str(home / "config.yaml")
