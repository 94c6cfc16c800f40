"""The example producer (``manifests/tools/produce_events.py``): the wire format it writes and the
schema id it computes from a manifest repository with pipectl's fold (``repo_schema_id``)."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import avro.io
import avro.schema
import pytest

from controller.jobkit.wire import parse_header
from controller.model.manifest import SchemaFormat
from controller.rollout.schema_registry import build, identity
from controller.source.git import GitSource
from controller.source.schema_history import history

ROOT = Path(__file__).resolve().parents[3]
V1 = (ROOT / "manifests" / "schemas" / "host_metric_event.avsc").read_text()
V2 = json.dumps({**json.loads(V1), "fields": [{"name": "region", "type": "string", "default": "eu"},
                                              *json.loads(V1)["fields"]]})
OTHER = json.dumps({"type": "record", "name": "O", "fields": [{"name": "k", "type": "long"}]})


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_events", ROOT / "manifests" / "tools" / "produce_events.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("produce_events", mod)
    spec.loader.exec_module(mod)
    return mod


pe = _load()


def release(schema_path: str, topic: str = "t.events") -> str:
    return f"""\
apiVersion: pipectl.dev/v1alpha1
kind: PipelineRelease
metadata: {{name: r}}
spec:
  version: 1.0.0
  schemas:
    - {{name: e, path: {schema_path}}}
  topics:
    - {{name: {topic}, partitions: 1, replicationFactor: 1, valueSchema: e}}
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


def commit(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c")


def full_fold_id(manifests: Path, text: str) -> int:
    src = GitSource(str(manifests))
    head = src.resolve()
    assert head is not None
    ids = {identity(e.format, e.text): e.id for e in build(history(src, head, None, src.subdir)).schemas}
    return ids[identity(SchemaFormat.AVRO, text)]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Manifests in the subdirectory ``m`` of a repo with commits outside it: OTHER first (id 1),
    then V1 (id 2), then V2 (id 3), with commits that touch only files outside ``m`` between."""
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    commit(r, {"m/releases/o.yaml": release("schemas/o.avsc", "o.other"), "m/schemas/o.avsc": OTHER})
    commit(r, {"README": "outside"})
    commit(r, {"m/releases/r.yaml": release("schemas/e.avsc"), "m/schemas/e.avsc": V1})
    commit(r, {"README": "outside again"})
    commit(r, {"m/schemas/e.avsc": V2})
    return r


def test_ids_are_the_full_folds_though_only_the_manifest_commits_are_read(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "v1.avsc").write_text(V1)
    (tmp_path / "v2.avsc").write_text(V2)
    m = repo / "m"
    assert pe.repo_schema_id(tmp_path / "v1.avsc", m) == full_fold_id(m, V1) == 2
    assert pe.repo_schema_id(tmp_path / "v2.avsc", m) == full_fold_id(m, V2) == 3
    # the default repository is the one the schema file is in (schemas/ under the manifests)
    assert pe.repo_schema_id(m / "schemas" / "e.avsc") == 3


def test_a_schema_outside_the_manifest_directory_reads_every_commit(repo: Path) -> None:
    commit(repo, {"shared/x.avsc": OTHER})  # a file outside m/ that a release reads
    commit(repo, {"m/releases/x.yaml": release("../shared/x.avsc", "x.events")})
    commit(repo, {"shared/x.avsc": V2.replace('"eu"', '"us"')})  # changed outside m/ only: a new id
    m = repo / "m"
    assert pe.repo_schema_id(repo / "shared" / "x.avsc", m) == full_fold_id(m, V2.replace('"eu"', '"us"')) == 4


def test_a_schema_no_release_declares_has_no_id(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "x.avsc").write_text(json.dumps({"type": "record", "name": "X", "fields": []}))
    with pytest.raises(SystemExit, match="serves no id"):
        pe.repo_schema_id(tmp_path / "x.avsc", repo / "m")


def test_encoder_writes_the_wire_format_and_fills_defaults(tmp_path: Path) -> None:
    (tmp_path / "v2.avsc").write_text(V2)
    enc = pe.Encoder(tmp_path / "v2.avsc", schema_id=3)
    event = pe.Event("host-0001", "cpu.user", 1.5, 1_700_000_000_000)
    sid, body = parse_header(enc.encode(event))
    assert sid == 3
    schema = avro.schema.parse(V2)
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))
    assert (datum["region"], datum["host"], datum["value"]) == ("eu", "host-0001", 1.5)
