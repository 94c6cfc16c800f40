"""`pipectl validate` of a streaming job's sources: its topics are read as one Kafka source, so
they start from one place; sources that ask for different ones are refused at file:line. A job
that emits final windows (``--emit final``) needs a table of its own per version (blueGreen)."""

from __future__ import annotations

from pathlib import Path

from controller.source.validate import load_repo

REL = "releases/host-metrics.yaml"
ONE = "      sources:\n        - topic: telemetry.host_metrics\n"


def _replace(root: Path, old: str, new: str) -> int:
    """Replace ``old`` in the example release; the line of the job's ``- name:``."""
    path = root / REL
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return next(i for i, line in enumerate(text.splitlines(), 1) if "- name: host-metrics-agg" in line)


def _sources(root: Path, block: str) -> int:
    return _replace(root, ONE, block)


def test_sources_with_one_starting_point_are_valid(repo: Path) -> None:
    _sources(repo, ONE.replace("host_metrics\n", "host_metrics\n          startingOffsets: earliest\n"))
    assert [str(p) for p in load_repo(repo).problems] == []
    job = load_repo(repo).release("host-metrics").spec.streaming_jobs[0]
    assert job.sources[0].starting_offsets == "earliest"


def test_sources_asking_for_different_starting_points_are_refused(repo: Path) -> None:
    job_line = _sources(
        repo,
        "      sources:\n        - {topic: telemetry.host_metrics, startingOffsets: earliest}\n"
        "        - {topic: telemetry.host_metrics_late, startingOffsets: latest}\n",
    )
    assert [str(p) for p in load_repo(repo).problems] == [
        f"{REL}:{job_line}: spec.streamingJobs[0]: every source of a job starts from the same offsets "
        "(its topics are read as one Kafka source); these ask for earliest, latest"
    ]


ARGS = "      strategy: blueGreen\n"


def _job_lines(root: Path, replacement: str) -> int:
    return _replace(root, ARGS, replacement)


def test_final_windows_with_blue_green_are_valid(repo: Path) -> None:
    _job_lines(repo, ARGS + '      args: ["--emit", "final", "--watermark", "30 seconds"]\n')
    assert [str(p) for p in load_repo(repo).problems] == []
    assert load_repo(repo).release("host-metrics").spec.streaming_jobs[0].args[:2] == ["--emit", "final"]


def test_final_windows_in_place_are_refused(repo: Path) -> None:
    job_line = _job_lines(repo, "      strategy: inPlace\n      args: [--emit=final]\n")
    assert [str(p) for p in load_repo(repo).problems] == [
        f"{REL}:{job_line}: spec.streamingJobs[0]: args --emit final needs strategy blueGreen (or canary "
        "without keys): the windows open in the old version's state would be lost when the new one "
        "starts from its offsets"
    ]
