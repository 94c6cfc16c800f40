"""`pipectl validate` of key-subset canary serving (``streamingJobs[].keys``): bad steps, key columns
the sink table lacks, keys without strategy canary — each at file:line: field.path; and an old
``strategy: canary`` without keys stays valid (it means blue/green)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.model.manifest import Strategy
from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_repo(root).problems]


def set_strategy(root: Path, block: str) -> int:
    """Replace the job's ``strategy: blueGreen`` line with ``block``; the line it starts on."""
    path = root / REL
    text = path.read_text()
    old = "      strategy: blueGreen\n"
    assert old in text
    path.write_text(text.replace(old, block, 1))
    return next(i for i, line in enumerate(text.splitlines(), 1) if "strategy: blueGreen" in line)


def test_canary_with_keys_is_valid_and_parsed(repo: Path) -> None:
    set_strategy(
        repo, "      strategy: canary\n      keys: {columns: [host, metric], steps: [10, 50, 100]}\n"
    )
    assert problems(repo) == []
    job = load_repo(repo).release("host-metrics").spec.streaming_jobs[0]
    assert job.strategy is Strategy.CANARY
    assert job.keys is not None and job.keys.columns == ["host", "metric"] and job.keys.steps == [10, 50, 100]


def test_old_canary_without_keys_stays_valid(repo: Path) -> None:
    set_strategy(repo, "      strategy: canary\n")
    assert problems(repo) == []
    assert load_repo(repo).release("host-metrics").spec.streaming_jobs[0].keys is None


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("[10, 50]", "the last step must be 100 (the new version serves every key); got 50"),
        ("[50, 10, 100]", "steps must be strictly increasing; got [50, 10, 100]"),
        ("[10, 10, 100]", "steps must be strictly increasing; got [10, 10, 100]"),
        ("[0, 100]", "each step is a percent in 1..100; got 0"),
        ("[10, 101]", "each step is a percent in 1..100; got 101"),
    ],
)
def test_bad_steps(repo: Path, steps: str, message: str) -> None:
    line = set_strategy(
        repo, f"      strategy: canary\n      keys:\n        columns: [host]\n        steps: {steps}\n"
    )
    assert problems(repo) == [f"{REL}:{line + 3}: spec.streamingJobs[0].keys.steps: {message}"]


def test_key_column_not_in_the_sink_table(repo: Path) -> None:
    line = set_strategy(
        repo, "      strategy: canary\n      keys:\n        columns: [host, hostname]\n        steps: [100]\n"
    )
    assert problems(repo) == [
        f"{REL}:{line + 2}: spec.streamingJobs[0].keys.columns[1]: key column 'hostname' is not a column "
        "of sink table telemetry.host_metrics_1m (columns: host, metric, window_start, samples, avg_value, "
        "max_value, dt)"
    ]


def test_keys_without_canary(repo: Path) -> None:
    line = set_strategy(repo, "      strategy: blueGreen\n      keys: {columns: [host], steps: [100]}\n")
    job_line = line - 7  # "- name: host-metrics-agg"
    assert problems(repo) == [
        f"{REL}:{job_line}: spec.streamingJobs[0]: keys needs strategy canary (this job's "
        "strategy is blueGreen)"
    ]
