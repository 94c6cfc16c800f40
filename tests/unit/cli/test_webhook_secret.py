"""The webhook's secret is never empty: an empty or blank secret file, or a blank
``PIPECTL_WEBHOOK_SECRET``, stops ``controller run`` from starting its API (naming the file or the
variable) instead of serving a webhook that accepts nothing, or anything; a missing file is created
0600 with a random secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from controller.cli.access import webhook_secret


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPECTL_WEBHOOK_SECRET", raising=False)


@pytest.mark.parametrize("text", ["", "\n", "  \t\n"])
def test_an_empty_secret_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "webhook-secret"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{path}: the webhook secret file is empty$"):
        webhook_secret(tmp_path)
    other = tmp_path / "elsewhere"
    other.write_text(text)
    with pytest.raises(ValueError, match="elsewhere: the webhook secret file is empty"):
        webhook_secret(tmp_path, other)


def test_a_blank_variable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPECTL_WEBHOOK_SECRET", "   ")
    with pytest.raises(ValueError, match="PIPECTL_WEBHOOK_SECRET is blank"):
        webhook_secret(tmp_path)
    monkeypatch.setenv("PIPECTL_WEBHOOK_SECRET", " s3cret\n")
    assert webhook_secret(tmp_path) == "s3cret"


def test_a_missing_file_gets_a_random_secret(tmp_path: Path) -> None:
    first = webhook_secret(tmp_path / "state")
    path = tmp_path / "state" / "webhook-secret"
    assert len(first) >= 40 and path.read_text() == first + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert webhook_secret(tmp_path / "state") == first
