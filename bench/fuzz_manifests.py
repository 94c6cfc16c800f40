"""Fuzz the manifest loader and the repository validator with hypothesis.

Every example is a small manifest repository written to a temporary directory: the example
release and environments of ``manifests/`` (and a small release without Spark jobs), mutated
structurally (wrong types, missing and unknown fields, unicode, huge numbers, non-string keys,
duplicated list items) and textually (duplicate keys, anchors/aliases incl. recursive ones and
alias bombs, merge keys, tags, deep nesting, binary junk, truncation, directives, BOMs), plus
mutated referenced files (Avro schema, DAG, job, SQL). Each example runs
``controller.source.loader.decode_utf8``/``load_documents`` on every manifest file and
``controller.source.validate.load_repo`` on the repository.

A failure is any exception out of them, or a problem that does not carry ``file:line`` (a file of
the repository and a line inside it). Usage::

    .venv/bin/python bench/fuzz_manifests.py [--minutes 10] [--seed N] [--out FILE]

Prints examples/s, total examples and failures; writes JSON to ``bench/results/fuzz_manifests.json``
(``--out``) and, for each distinct failure, its smallest example under
``bench/results/fuzz_failures/<signature>/``. Exit 1 when there was a failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.model.errors import Problem  # noqa: E402
from controller.source.loader import MAX_FILE_BYTES  # noqa: E402
from controller.source.validate import load_repo  # noqa: E402

MANIFESTS = ROOT / "manifests"
RESULTS = ROOT / "bench" / "results"
SUPPORT_DIRS = ("schemas", "dags", "jobs", "transforms")

SMALL_RELEASE = {
    "apiVersion": "pipectl.dev/v1alpha1",
    "kind": "PipelineRelease",
    "metadata": {"name": "rc"},
    "spec": {
        "version": "1.0.0",
        "topics": [
            {
                "name": "rc.events",
                "partitions": 2,
                "replicationFactor": 1,
                "config": {"retention.ms": "3600000"},
            }
        ],
        "tables": [
            {
                "name": "rc.counts",
                "columns": [{"name": "k", "type": "string"}, {"name": "n", "type": "bigint"}],
                "partitionedBy": [{"name": "dt", "type": "string"}],
            }
        ],
        "views": [{"name": "rc.counts_v", "table": "rc.counts"}],
        "dags": [{"id": "rc_daily", "path": "dags/host_metrics_daily.py"}],
        "rollout": {
            "stages": ["dev", "staging", "prod"],
            "gates": [
                {
                    "name": "readable",
                    "type": "dataQuality",
                    "query": "SELECT count(*) FROM rc.counts",
                    "expect": ">= 0",
                }
            ],
            "rollback": {"automatic": True},
        },
    },
}

INTERESTING_STRINGS = [
    "",
    " ",
    "\x00",
    "\t",
    "é",
    "\U0001d518\U0001d52b\U0001d526",
    "\u202eevil",
    "\ufeff",
    "\u2028",
    "a" * 5000,
    "{{ ref('x') }}",
    "{% for x in y %}",
    "${HOME}",
    "*",
    "&",
    "!",
    "|",
    ">",
    "- x",
    "key: value",
    "dev",
    "prod",
    "canary",
    "staging",
    "1.0.0",
    "1.0.0-rc.1+build",
    "v1",
    "01.02.03",
    "1e999",
    "-1",
    "0",
    "NaN",
    "null",
    "~",
    "env:PIPECTL_AIRFLOW_PASSWORD",
    "env:PIPECTL_TOKEN",
    "env:",
    "file:../../etc/passwd",
    "file:/etc/passwd",
    "file:x",
    "../../etc/passwd",
    "/etc/passwd",
    "schemas/../../x",
    "schemas/host_metric_event.avsc",
    "dags/host_metrics_daily.py",
    "transforms/host_metrics_daily.sql",
    "jobs/host_metrics_agg.py",
    "telemetry.host_metrics",
    "telemetry.host_metrics_1m",
    "a.b.c.d",
    ".",
    "..",
    "a..b",
    "rc.events",
    "SELECT 1",
    "SELECT count(*) FROM rc.counts",
    "> 0",
    ">= ",
    "== 3",
    "10s",
    "0s",
    "-5m",
    "99999h",
    "1y",
    "local[2]",
    "http://127.0.0.1:8089",
    "127.0.0.1:9092",
    "automatic",
    "approval",
    "blueGreen",
    "inPlace",
    "canaryOf",
    "BACKWARD",
    "FULL_TRANSITIVE",
    "avro",
    "json",
    "parquet",
    "@daily",
    "* * * * *",
]

HUGE_SCALARS = [
    "1e999",
    "-1e999",
    ".inf",
    "-.inf",
    ".nan",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "0x7fffffffffffffffffffffff",
    "0o7777777777777777777777",
    "0b" + "1" * 80,
    "1_000_000",
    "1:20:30",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "0.0000000000000000001",
    "1" * 4300,
    "123456789012345678901234567890.5",
    "+12",
    "-0",
    "0777",
]

YAML_TAGS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!!float 1",
    "!!int '12'",
    "!!str 12",
    "!!null ''",
    "!!bool yes",
    "!custom x",
    "!<tag:x.org,2000:y> z",
    "!!map {a: 1}",
    "!!seq [1]",
    "!!value =",
    "!!merge <<",
    "!!int 0xZZ",
]


def load_base() -> tuple[list[tuple[str, Any]], dict[str, bytes]]:
    """Base manifests (path, data) and the files they reference (path -> bytes)."""
    docs: list[tuple[str, Any]] = []
    for p in sorted((MANIFESTS / "releases").glob("*.yaml")) + sorted(
        (MANIFESTS / "environments").glob("*.yaml")
    ):
        docs.append((str(p.relative_to(MANIFESTS)), yaml.safe_load(p.read_text(encoding="utf-8"))))
    docs.append(("releases/rc.yaml", SMALL_RELEASE))
    support: dict[str, bytes] = {}
    for d in SUPPORT_DIRS:
        for p in sorted((MANIFESTS / d).rglob("*")):
            if p.is_file():
                support[str(p.relative_to(MANIFESTS))] = p.read_bytes()
    return docs, support


BASE_DOCS, SUPPORT = load_base()


# --- strategies -----------------------------------------------------------------------------------

scalar_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(INTERESTING_STRINGS),
    st.binary(max_size=20),
)
junk = st.recursive(
    scalar_junk,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(INTERESTING_STRINGS)), children, max_size=4
        ),
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def _deep(depth: int, kind: str) -> Any:
    v: Any = "x"
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


@st.composite
def mutated_data(draw: st.DrawFn, data: Any) -> Any:
    data = json.loads(json.dumps(data))  # a deep copy of plain data
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(
            st.sampled_from(["replace", "replace", "delete", "add", "rekey", "dup", "deep", "huge", "string"])
        )
        if not path:
            if op in ("replace", "delete"):
                data = draw(junk)
            continue
        parent, last = _get(data, path[:-1]), path[-1]
        if op == "replace":
            parent[last] = draw(junk)
        elif op == "string":
            parent[last] = draw(st.sampled_from(INTERESTING_STRINGS))
        elif op == "huge":
            parent[last] = draw(
                st.sampled_from(
                    [10**100, -(10**100), 2**63, 2**64 + 1, float("inf"), 1e308, -(2**31) - 1, 2**31]
                )
            )
        elif op == "deep":
            parent[last] = _deep(
                draw(st.integers(min_value=10, max_value=300)), draw(st.sampled_from(["list", "dict"]))
            )
        elif op == "delete":
            del parent[last]
        elif op == "add":
            target = _get(data, path)
            if isinstance(target, dict):
                target[draw(st.one_of(st.text(max_size=12), st.sampled_from(INTERESTING_STRINGS)))] = draw(
                    junk
                )
            elif isinstance(target, list):
                target.append(draw(junk))
        elif op == "rekey" and isinstance(parent, dict):
            value = parent.pop(last)
            key = draw(
                st.one_of(
                    st.text(max_size=12),
                    st.integers(),
                    st.booleans(),
                    st.none(),
                    st.sampled_from(INTERESTING_STRINGS),
                )
            )
            parent[key] = value
        elif op == "dup" and isinstance(parent, list):
            parent.insert(
                draw(st.integers(min_value=0, max_value=len(parent))), json.loads(json.dumps(parent[last]))
            )
    return data


def dump(data: Any, draw: st.DrawFn) -> str:
    try:
        return str(
            yaml.dump(
                data,
                Dumper=yaml.CSafeDumper,
                allow_unicode=draw(st.booleans()),
                default_flow_style=draw(st.sampled_from([None, False, True])),
                sort_keys=draw(st.booleans()),
                width=draw(st.sampled_from([80, 20, 10**6])),
            )
        )
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        return json.dumps(data, default=str)


def _lines_op(text: str, draw: st.DrawFn, fn: Callable[[list[str], int], None]) -> str:
    lines = text.split("\n")
    i = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
    fn(lines, i)
    return "\n".join(lines)


def _set_value(text: str, draw: st.DrawFn, value: str) -> str:
    """``key: value`` on a random line that has a key."""

    def put(ls: list[str], i: int) -> None:
        if ":" in ls[i]:
            ls[i] = ls[i].split(":", 1)[0] + ": " + value

    return _lines_op(text, draw, put)


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        op = draw(
            st.sampled_from(
                [
                    "dup_line",
                    "anchor",
                    "recursive",
                    "bomb",
                    "merge",
                    "tag",
                    "deep_flow",
                    "deep_block",
                    "truncate",
                    "directive",
                    "multidoc",
                    "huge",
                    "complex_key",
                    "indent",
                    "crlf",
                    "insert_text",
                ]
            )
        )
        if op == "dup_line":
            text = _lines_op(text, draw, lambda ls, i: ls.insert(i, ls[i]))
        elif op == "anchor":

            def anchor(ls: list[str], i: int) -> None:
                if ":" in ls[i] and not ls[i].rstrip().endswith(":"):
                    k, v = ls[i].split(":", 1)
                    ls[i] = f"{k}: &a1 {v.strip()}"
                    j = draw(st.integers(min_value=i, max_value=len(ls) - 1))
                    if ":" in ls[j] and j != i:
                        k2 = ls[j].split(":", 1)[0]
                        ls[j] = f"{k2}: *a1"

            text = _lines_op(text, draw, anchor)
        elif op == "recursive":
            text += "\nloop: &r [*r]\n" if draw(st.booleans()) else "\nloop: &r {x: *r}\n"
        elif op == "bomb":
            width = draw(st.integers(min_value=2, max_value=12))
            levels = draw(st.integers(min_value=2, max_value=9))
            bomb = ["b0: &b0 [lol]"]
            for n in range(1, levels):
                bomb.append(f"b{n}: &b{n} [{', '.join([f'*b{n - 1}'] * width)}]")
            text += "\n" + "\n".join(bomb) + "\n"
        elif op == "merge":
            text = "base: &m {version: 9.9.9}\n" + text + "\nextra:\n  <<: *m\n"
        elif op == "tag":
            text = _set_value(text, draw, draw(st.sampled_from(YAML_TAGS)))
        elif op == "deep_flow":
            n = draw(st.sampled_from([50, 400, 1000, 3000, 20000]))
            o, c = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
            text += f"\ndeep: {o * n}x{c * n}\n"
        elif op == "deep_block":
            n = draw(st.sampled_from([50, 300, 1200]))
            text += (
                "\ndeep:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(n)) + " " * (n + 1) + "x\n"
            )
        elif op == "truncate" and text:
            text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
        elif op == "directive":
            text = (
                draw(
                    st.sampled_from(
                        [
                            "%YAML 1.1\n---\n",
                            "%YAML 1.2\n---\n",
                            "%YAML 2.0\n---\n",
                            "%TAG ! tag:x.org,2000:\n---\n",
                            "%FOO bar\n---\n",
                            "--- !!map\n",
                        ]
                    )
                )
                + text
            )
        elif op == "multidoc":
            text = text + draw(
                st.sampled_from(
                    ["\n---\n", "\n...\n", "\n---\n" + text, "\n--- \n- a\n", "\n---\n~\n", "\n--- 3\n"]
                )
            )
        elif op == "huge":
            text = _set_value(text, draw, draw(st.sampled_from(HUGE_SCALARS)))
        elif op == "complex_key":
            text += draw(
                st.sampled_from(
                    [
                        "\n? [a, b]\n: c\n",
                        "\n? {a: 1}\n: c\n",
                        "\n1: x\n",
                        "\nnull: x\n",
                        "\n~: y\n",
                        "\ntrue: z\n",
                        "\n2026-01-01: d\n",
                        "\n1.5: f\n",
                    ]
                )
            )
        elif op == "indent":
            text = _lines_op(
                text, draw, lambda ls, i: ls.__setitem__(i, draw(st.sampled_from(["\t", " ", "   "])) + ls[i])
            )
        elif op == "crlf":
            text = text.replace("\n", draw(st.sampled_from(["\r\n", "\r", "\x85", "\u2028"])))
        elif op == "insert_text" and text:
            pos = draw(st.integers(min_value=0, max_value=len(text)))
            text = (
                text[:pos]
                + draw(st.one_of(st.text(max_size=8), st.sampled_from(INTERESTING_STRINGS)))
                + text[pos:]
            )
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        op = draw(st.sampled_from(["insert", "overwrite", "bom", "latin1", "nul", "truncate", "utf16"]))
        pos = draw(st.integers(min_value=0, max_value=len(raw)))
        if op == "insert":
            raw = raw[:pos] + draw(st.binary(min_size=1, max_size=12)) + raw[pos:]
        elif op == "overwrite" and raw:
            junk_b = draw(st.binary(min_size=1, max_size=8))
            raw = raw[:pos] + junk_b + raw[pos + len(junk_b) :]
        elif op == "bom":
            raw = (
                draw(
                    st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf"])
                )
                + raw
            )
        elif op == "latin1":
            raw = raw[:pos] + "é".encode("latin-1") + raw[pos:]
        elif op == "nul":
            raw = raw[:pos] + b"\x00" + raw[pos:]
        elif op == "truncate":
            raw = raw[:pos]
        elif op == "utf16":
            raw = raw.decode("utf-8", "replace").encode("utf-16")
    return raw


@st.composite
def support_file(draw: st.DrawFn, path: str, raw: bytes) -> bytes:
    """A referenced file (schema, DAG, job, SQL), usually unchanged."""
    op = draw(st.sampled_from(["keep"] * 6 + ["bytes", "empty", "deep", "text", "nul"]))
    if op == "bytes":
        return bytes(draw(mutated_bytes(raw)))
    if op == "empty":
        return b""
    if op == "deep":
        n = draw(st.sampled_from([100, 1000, 5000, 100000]))
        if path.endswith(".avsc"):
            return ("[" * n + "]" * n).encode()
        if path.endswith(".py"):
            return draw(
                st.sampled_from(
                    [
                        ("x = " + "(" * n + "1" + ")" * n).encode(),
                        ("x = " + "-" * n + "1").encode(),
                        ("x = " + "[" * n + "]" * n).encode(),
                        ("x = 1" + " + 1" * n).encode(),
                    ]
                )
            )
        return (
            "SELECT " + "(" * n + "1" + ")" * n + " AS k FROM {{ ref('telemetry.host_metrics_1m') }}"
        ).encode()
    if op == "nul":
        return raw[: len(raw) // 2] + b"\x00" + raw[len(raw) // 2 :]
    if op == "text":
        if path.endswith(".avsc"):
            return draw(
                st.sampled_from(
                    [
                        b'{"type": "record"}',
                        b'{"type": "record", "name": "x", "fields": 3}',
                        b"[]",
                        b"null",
                        b"1e999",
                        b'{"type": "enum", "name": "e", "symbols": [1]}',
                        b'{"type": {"type": {"type": "int"}}}',
                        b'{"type": "fixed", "name": "f", "size": -1}',
                        b'{"type": "array"}',
                        b'{"type": "map", "values": 3}',
                        b'{"type": "record", "name": "r", "fields": [{"name": 1, "type": "int"}]}',
                        b'"\\ud800"',
                        b'{"type": "record", "name": "r", "fields": [{"type": "int"}]}',
                        b'{"type": ["int", "int"]}',
                        b'{"type": "int", "logicalType": "decimal", "precision": -1}',
                        b"NaN",
                        b'{"a": 1, "a": 2}',
                        b'{"type": "record", "name": "r", "fields": [{"name": "a", "type": "r"}]}',
                    ]
                )
            )
        if path.endswith(".sql"):
            return draw(
                st.sampled_from(
                    [
                        b"{{",
                        b"{% if %}",
                        b"{{ ref() }}",
                        b"{{ ref(1) }}",
                        b"{{ ref('a', 'b', 'c') }}",
                        b"{{ x.y.z }}",
                        b"{{ config(materialized='x') }}",
                        b"SELECT",
                        b";;;",
                        b"SELECT 1; DROP TABLE x",
                        b"SELECT * FROM {{ ref('nope') }}",
                        b"{{ ''.__class__.__mro__ }}",
                        b"{% raw %}",
                        b"{# x",
                        b"SELECT a FROM {{ ref('telemetry.host_metrics_1m') }} WHERE",
                        b"WITH x AS (SELECT 1) SELECT * FROM x",
                        "SELECT 'é', \u2028 1".encode(),
                        b"SELECT 1e999999",
                        b"{{ range(10**9) | list }}",
                    ]
                )
            )
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    return raw


@st.composite
def repos(draw: st.DrawFn) -> dict[str, bytes | str]:
    """A repository: relative path -> bytes (a file) or str (a symlink target)."""
    files: dict[str, bytes | str] = {}
    n = len(BASE_DOCS)
    # each base document is there most of the time (a release without its environments mostly reports
    # unknown stages), and one is always there
    chosen = [i for i in range(n) if draw(st.integers(min_value=0, max_value=9)) > 0] or [n - 1]
    for i in chosen:
        path, data = BASE_DOCS[i]
        level = draw(st.sampled_from(["valid"] * 5 + ["data", "data", "text", "bytes", "all"]))
        if level in ("data", "all"):
            data = draw(mutated_data(data))
        text = dump(data, draw)
        if level in ("text", "all"):
            text = draw(mutated_text(text))
        raw = text.encode("utf-8", "surrogatepass")
        if level in ("bytes", "all"):
            raw = draw(mutated_bytes(raw))
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            path = draw(st.sampled_from(["releases/", "environments/"])) + draw(
                st.sampled_from(
                    ["x.yml", "sub/dir/x.yaml", "é.yaml", ".hidden.yaml", "a b.yaml", "x.yaml.bak", "-.yaml"]
                )
            )
        files[path] = raw
    for path, raw in SUPPORT.items():
        files[path] = draw(support_file(path, raw))
    extra = draw(st.sampled_from(["none"] * 8 + ["symlink_out", "symlink_loop", "dir_named_yaml", "empty"]))
    if extra == "symlink_out":
        files[draw(st.sampled_from(["releases/out.yaml", "schemas/host_metric_event.avsc"]))] = (
            "/etc/hostname"
        )
    elif extra == "symlink_loop":
        files["releases/loop"] = ".."
    elif extra == "dir_named_yaml":
        files["releases/d.yaml/x.yaml"] = b"apiVersion: pipectl.dev/v1alpha1\n"
    elif extra == "empty":
        files["environments/empty.yaml"] = b""
    return files


# --- the check ------------------------------------------------------------------------------------


class Fuzz:
    def __init__(self, deadline: float, failures_dir: Path):
        self.deadline = deadline
        self.failures_dir = failures_dir
        self.examples = 0
        self.failing_examples = 0
        self.valid_repos = 0
        self.problems_seen = 0
        self.failures: dict[str, dict[str, Any]] = {}
        self.messages: Counter[str] = Counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="pipectl-fuzz-"))

    def write(self, files: dict[str, bytes | str]) -> Path:
        root = self.tmp / "repo"
        if root.exists() or root.is_symlink():
            shutil.rmtree(root)
        root.mkdir()
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                if not p.exists() and not p.is_symlink():
                    p.symlink_to(content)
            elif not p.is_dir():
                p.write_bytes(content)
        return root

    def line_problem(self, root: Path, p: Any) -> str | None:
        """Why ``p`` does not carry file:line (a repo file, a line inside it), or None."""
        if not isinstance(p, Problem):
            return f"not a Problem: {type(p).__name__}"
        if not p.file or not isinstance(p.file, str):
            return f"problem without a file: {p!s}"
        if not p.message:
            return f"problem without a message: {p!s}"
        full = root / p.file
        if not full.is_file():
            return f"problem names {p.file!r}, not a file of the repository: {p!s}"
        raw = full.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            return None  # a whole-file problem: the file is too large to read
        if not isinstance(p.line, int) or p.line < 1:
            return f"problem without a line: {p!s}"
        # YAML counts \r, \r\n, \x85, \u2028 and \u2029 as line breaks as well
        text = raw.decode("utf-8", "replace")
        breaks = sum(text.count(c) for c in ("\n", "\r", "\x85", "\u2028", "\u2029"))
        if p.line > breaks + 2:
            return f"line {p.line} is past the end of {p.file} ({breaks + 1} line(s)): {p!s}"
        if ":None" in str(p):
            return f"problem names a line None: {p!s}"
        if not str(p).startswith(f"{p.file}:{p.line}: "):
            return f"problem does not print as file:line: {p!s}"
        return None

    def check(self, files: dict[str, bytes | str]) -> None:
        self.examples += 1
        root = self.write(files)
        try:
            # load_repo reads every manifest through loader.decode_utf8 and loader.load_documents
            snap = load_repo(root)
            problems: list[Any] = list(snap.problems)
            for plist in snap.invalid_releases.values():
                problems += plist
            self.problems_seen += len(problems)
            if not snap.problems and not snap.invalid_releases:
                self.valid_repos += 1
            bad = [why for p in problems if (why := self.line_problem(root, p))]
            if bad:
                why, _, shown = bad[0].partition(": ")
                message = shown.split(": ", 1)[-1]
                self.fail(f"no-file-line: {_shape(why)}: {_shape(message)[:80]}", "\n".join(bad), files)
            for p in problems:
                self.messages[_shape(str(p.message))[:60]] += 1
        except Exception as e:
            tb = traceback.format_exc()
            frames = traceback.extract_tb(e.__traceback__)
            where = next((f for f in reversed(frames) if "/controller/" in f.filename), frames[-1])
            sig = f"{type(e).__name__}@{Path(where.filename).name}:{where.lineno}"
            self.fail(sig, tb, files)

    def fail(self, sig: str, detail: str, files: dict[str, bytes | str]) -> None:
        self.failing_examples += 1
        size = sum(len(c) for c in files.values())
        key = hashlib.sha256(sig.encode()).hexdigest()[:12]
        known = self.failures.get(sig)
        if known is None:
            print(f"\nFAILURE {sig}\n{detail[-2500:]}", flush=True)
            known = self.failures[sig] = {
                "signature": sig,
                "count": 0,
                "detail": detail[-4000:],
                "size": None,
                "example": str(self.failures_dir / key),
            }
        known["count"] += 1
        if known["size"] is None or size < known["size"]:
            known["size"], known["detail"] = size, detail[-4000:]
            dest = self.failures_dir / key
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            for rel, content in files.items():
                p = dest / (rel.replace("/", "__") + (".symlink" if isinstance(content, str) else ""))
                p.write_bytes(content.encode() if isinstance(content, str) else content)
            (dest / "SIGNATURE.txt").write_text(sig + "\n\n" + detail)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _shape(s: str) -> str:
    """A message with quoted values and numbers blanked, so similar failures group together."""
    out, quote = [], None
    for ch in s:
        if quote:
            if ch == quote:
                quote = None
                out.append("'…'")
            continue
        if ch in "'\"":
            quote = ch
            continue
        out.append("#" if ch.isdigit() else ch)
    return "".join(out)


def _shown(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def run(minutes: float, seed: int, out: Path) -> int:
    t0 = time.time()
    deadline = t0 + minutes * 60
    failures_dir = out.parent / "fuzz_failures"
    if failures_dir.exists():
        shutil.rmtree(failures_dir)
    fuzz = Fuzz(deadline, failures_dir)
    rng = random.Random(seed)
    batches = 0
    last_print = t0
    try:
        while time.time() < deadline:
            batches += 1

            @hyp_seed(rng.getrandbits(64))
            @settings(
                max_examples=100,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=False,
            )
            @given(repos())
            def one(files: dict[str, bytes | str]) -> None:
                if time.time() < deadline:
                    fuzz.check(files)

            one()
            if time.time() - last_print >= 30:
                last_print = time.time()
                el = last_print - t0
                print(
                    f"[{el:6.0f}s] {fuzz.examples} examples ({fuzz.examples / el:.1f}/s), "
                    f"{fuzz.failing_examples} failing, {len(fuzz.failures)} distinct",
                    flush=True,
                )
    finally:
        fuzz.close()
    elapsed = time.time() - t0
    result = {
        "command": f"{_shown(Path(sys.executable))} bench/fuzz_manifests.py --minutes {minutes:g} "
        f"--seed {seed}",
        "minutes": round(elapsed / 60, 2),
        "seed": seed,
        "started": datetime.fromtimestamp(t0, UTC).isoformat(timespec="seconds"),
        "examples": fuzz.examples,
        "examples_per_s": round(fuzz.examples / elapsed, 1) if elapsed else 0.0,
        "failures": fuzz.failing_examples,
        "distinct_failures": sorted(fuzz.failures.values(), key=lambda f: -int(f["count"])),
        "valid_repos": fuzz.valid_repos,
        "problems_reported": fuzz.problems_seen,
        "top_problem_messages": fuzz.messages.most_common(25),
        "hypothesis_batches": batches,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": [round(x, 1) for x in os.getloadavg()],
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\nfuzz_manifests: {fuzz.examples} examples in {elapsed:.0f}s ({result['examples_per_s']}/s), "
        f"{fuzz.valid_repos} valid repos, {fuzz.problems_seen} problems reported, "
        f"failures {fuzz.failing_examples} ({len(fuzz.failures)} distinct) -> {out}"
    )
    for f in result["distinct_failures"]:
        print(f"  {f['count']:6d}  {f['signature']}  ({f['example']})")
    return 1 if fuzz.failing_examples else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_manifests.json")
    args = ap.parse_args()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    return run(args.minutes, args.seed, args.out)


if __name__ == "__main__":
    sys.exit(main())
