"""The README's tour, run verbatim: the ``sh`` block after the paragraph that names this file, one
line at a time, in a shell from the checkout, each line must exit 0 and print (stdout and stderr,
whitespace collapsed) the text after ``# prints:`` in its comment.

What ``make demo`` leaves behind is stood in for by a state of the test's own, so the tour's
commands find the same things: a real ``pipectl controller run`` on the local stack that has
promoted the example ``host-metrics`` 1.0.0 to dev, from a repo holding the example's four
Environments (topic and database prefixes of the test's own) and its release trimmed to what
the tour reads at dev (schema, topic, table, view; the streaming job, DAG, transform and the gates
that need them are left out, and its stages are ``[dev]``), and a current context named ``demo``
(its own config file) with that repo, state, server and demo-alice's token in a token file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctlkit import ROOT, Ctl, drop_everything, free_port, git, status, token_for, wait_for

pytestmark = pytest.mark.integration

MARKER = "tests/integration/test_readme_tour.py"
PRINTS = "# prints:"


def tour_lines(readme: str) -> list[tuple[str, str]]:
    """(command, what it prints) for each line of the tour block."""
    after = readme.split(MARKER, 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block, f"no ```sh block after {MARKER} in README.md"
    lines = []
    for raw in block.group(1).splitlines():
        if not raw.strip():
            continue
        assert PRINTS in raw, f"README tour line without '{PRINTS}': {raw}"
        command, _, prints = raw.partition(PRINTS)
        lines.append((command.strip(), prints.strip()))
    return lines


def _example_repo(root: Path, uid: str, dags: str) -> Path:
    repo = root / "repo"
    shutil.copytree(ROOT / "manifests" / "environments", repo / "environments")
    shutil.copytree(ROOT / "manifests" / "schemas", repo / "schemas")
    for path in (repo / "environments").glob("*.yaml"):
        env = yaml.safe_load(path.read_text())
        spec, name = env["spec"], env["metadata"]["name"]
        if "kafka" in spec:
            spec["kafka"]["topicPrefix"] = f"it{uid}{name}."
            spec["hive"]["databasePrefix"] = f"it{uid}{name}_"
            spec["airflow"]["dagsFolder"] = dags
        path.write_text(yaml.safe_dump(env, sort_keys=False))
    release = yaml.safe_load((ROOT / "manifests" / "releases" / "host-metrics.yaml").read_text())
    spec = release["spec"]
    for key in ("streamingJobs", "dags", "transforms"):
        spec.pop(key)
    spec["rollout"]["stages"] = ["dev"]
    spec["rollout"]["gates"] = [g for g in spec["rollout"]["gates"] if g["type"] == "schemaCompatibility"]
    (repo / "releases").mkdir()
    (repo / "releases" / "host-metrics.yaml").write_text(yaml.safe_dump(release, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "host-metrics 1.0.0")
    return repo


@pytest.fixture
def demo_like(tmp_path: Path, stack: dict[str, Any], unique_name: str) -> Iterator[dict[str, str]]:
    uid, dags = unique_name, stack["airflow_dags_folder"]
    repo = _example_repo(tmp_path, uid, dags)
    state = tmp_path / "state" / "state.db"
    state.parent.mkdir(parents=True)
    token = tmp_path / "demo-alice.token"
    token.write_text(token_for(state, "demo-alice") + "\n")
    ctl = Ctl(repo, state, free_port(), tmp_path / "controller.log")
    config = tmp_path / "config.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_")}
    env.update(PIPECTL_CONFIG=str(config), PIPECTL_AIRFLOW_PASSWORD=os.environ.get("PIPECTL_AIRFLOW_PASSWORD",
                                                                                    "admin"))
    ctl.start()
    try:
        wait_for(lambda: (status(state, "host-metrics").get("stages", {}).get("dev") or {}).get("phase")
                 == "Succeeded", 240, "host-metrics 1.0.0 Succeeded at dev", ctl.log)
        r = subprocess.run([str(ROOT / ".venv" / "bin" / "pipectl"), "config", "set-context", "demo",
                            "--server", f"http://127.0.0.1:{ctl.port}", "--repo", str(repo),
                            "--state", f"sqlite:///{state}", "--token-file", str(token), "--current"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        yield env
    finally:
        ctl.stop()
        drop_everything(uid, [f"it{uid}{s}_telemetry" for s in ("dev", "staging", "prod")], dags, None)


def test_the_readme_tour_runs_verbatim(demo_like: dict[str, str]) -> None:
    lines = tour_lines((ROOT / "README.md").read_text())
    assert len(lines) >= 10
    for command, prints in lines:
        r = subprocess.run(["bash", "-c", command], cwd=ROOT, env=demo_like, capture_output=True, text=True,
                           timeout=120)
        out = " ".join((r.stdout + "\n" + r.stderr).split())
        assert r.returncode == 0, f"{command}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert " ".join(prints.split()) in out, f"{command}\nexpected to print {prints!r}, printed:\n{out}"
        assert "no controller answers" not in out, command  # the verbs reached the running controller
