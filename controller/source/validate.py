"""Load and validate a manifest repository into a ``RepoSnapshot``.

Every problem is collected (not just the first) and reported as ``file:line: field.path: message``.
Parsing is pure apart from reading files under the repository root; nothing here talks to a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.model.errors import Problem
from controller.model.manifest import (
    API_VERSION,
    GATE_TYPES,
    KINDS,
    REMOVED_FIELDS,
    Environment,
    PipelineRelease,
)
from controller.source.loader import Document, decode_utf8, format_path, iter_yaml_files, load_documents
from controller.source.repo_files import check_python_file, check_schema_file, safe_path
from controller.source.secrets_policy import check_environment as check_secret_refs
from controller.source.validate_analysis import check_environment_templates, check_gate_templates
from controller.source.validate_keys import check_key_columns

MANIFEST_DIRS = ("releases", "environments")


@dataclass
class Loaded:
    """A parsed manifest object and its document (for line numbers; ``load_repo`` drops its data)."""

    obj: Any
    doc: Document

    @property
    def file(self) -> str:
        return self.doc.file

    def line(self, *path: str | int) -> int:
        return self.doc.line_of(tuple(path))


@dataclass
class RepoSnapshot:
    """Everything read from one revision of a manifest repository."""

    root: Path
    releases: dict[str, Loaded] = field(default_factory=dict)
    environments: dict[str, Loaded] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    invalid_releases: dict[str, list[Problem]] = field(default_factory=dict)
    invalid_environments: set[str] = field(default_factory=set)
    commit: str | None = None
    display_root: Path | None = None
    deleting: set[str] = field(default_factory=set)
    """Releases whose PipelineRelease object is being deleted (``controller.engine.kube_source``)."""

    def release(self, name: str) -> PipelineRelease:
        obj = self.releases[name].obj
        assert isinstance(obj, PipelineRelease)
        return obj

    def environment(self, name: str) -> Environment:
        obj = self.environments[name].obj
        assert isinstance(obj, Environment)
        return obj

    def read_text(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")


# --- pydantic errors → problems -------------------------------------------------------------

_GATE_TAGS = set(GATE_TYPES)


def _message(err: Any) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    if t == "missing":
        return "required field is missing"
    if t == "extra_forbidden":
        return "unknown field"
    if t == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if t == "union_tag_invalid":
        return f"unknown gate type {ctx.get('tag')!r} (expected one of: {', '.join(GATE_TYPES)})"
    if t == "union_tag_not_found":
        return f"gate needs a 'type' (one of: {', '.join(GATE_TYPES)})"
    if t == "literal_error":
        return f"must be {ctx.get('expected')}"
    if t == "enum":
        return f"must be one of {ctx.get('expected')}"
    if t in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[t]
        return f"must be {op} {next(iter(ctx.values()))} (got {err.get('input')!r})"
    if t == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    return str(err["msg"])


def _loc_path(loc: Iterable[Any]) -> tuple[str | int, ...]:
    # pydantic puts the discriminator tag into the location of a union member; users never wrote it.
    return tuple(p for p in loc if not (isinstance(p, str) and p in _GATE_TAGS))


def problems_from_validation(exc: ValidationError, doc: Document) -> list[Problem]:
    out = []
    for err in exc.errors():
        path = _loc_path(err["loc"])
        message = _message(err)
        if err["type"] == "extra_forbidden":
            pattern = tuple("*" if isinstance(p, int) else p for p in path)
            message = REMOVED_FIELDS.get(pattern, message)
        out.append(Problem(doc.file, doc.line_of(path), format_path(path), message))
    return out


def parse_object(doc: Document) -> tuple[Any | None, list[Problem]]:
    data = doc.data
    if not isinstance(data, dict):
        return None, [Problem(doc.file, doc.start_line, "", "a manifest must be a YAML mapping")]
    kind, api = data.get("kind"), data.get("apiVersion")
    if api != API_VERSION:
        msg = (
            "required field is missing"
            if api is None
            else f"unsupported apiVersion {api!r} (expected {API_VERSION})"
        )
        return None, [Problem(doc.file, doc.line_of(("apiVersion",)), "apiVersion", msg)]
    if not isinstance(kind, str) or kind not in KINDS:  # a mapping or list as kind is unhashable
        msg = (
            "required field is missing"
            if kind is None
            else f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})"
        )
        return None, [Problem(doc.file, doc.line_of(("kind",)), "kind", msg)]
    try:
        return KINDS[kind].model_validate(data), []
    except ValidationError as e:
        return None, problems_from_validation(e, doc)


# --- repository loading ---------------------------------------------------------------------


def find_repo_root(path: Path) -> Path:
    """The nearest ancestor (or self) that holds releases/ or environments/."""
    p = path if path.is_dir() else path.parent
    for cand in (p, *p.parents):
        if any((cand / d).is_dir() for d in MANIFEST_DIRS):
            return cand
    return p


def _manifest_files(root: Path, dirs: Sequence[str] = MANIFEST_DIRS) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        if (root / d).is_dir():
            files.extend(iter_yaml_files(root / d))
    return files


def load_repo(
    root: Path, display_root: Path | None = None, release_docs: Sequence[tuple[str, str]] | None = None
) -> RepoSnapshot:
    """Read and validate every manifest under ``root``/releases and ``root``/environments; with
    ``release_docs`` ((shown name, YAML text) pairs: PipelineRelease objects from Kubernetes,
    ``controller.engine.kube_source``) those replace ``root``/releases, validated the same way."""
    root = root.resolve()
    snap = RepoSnapshot(root=root, display_root=display_root)
    shown = display_root if display_root is not None else root

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(shown)) if shown == root else str(shown / p.relative_to(root))
        except ValueError:
            return str(p)

    per_file: dict[str, list[Problem]] = {}
    dirs = MANIFEST_DIRS if release_docs is None else ("environments",)
    sources = [(rel(p), p.read_bytes()) for p in _manifest_files(root, dirs)]
    for fname, raw in sources + [(f, t.encode()) for f, t in release_docs or ()]:
        text, problem = decode_utf8(raw, fname)
        if problem is not None:
            snap.problems.append(problem)
            continue
        assert text is not None
        docs, problems = load_documents(text, fname)
        snap.problems.extend(problems)
        for doc in docs:
            obj, problems = parse_object(doc)
            snap.problems.extend(problems)
            if obj is None:
                name = _raw_name(doc)
                if name and doc.data.get("kind") == "PipelineRelease":
                    snap.invalid_releases.setdefault(name, []).extend(problems)
                elif name and doc.data.get("kind") == "Environment":
                    snap.invalid_environments.add(name)
                continue
            table = snap.releases if isinstance(obj, PipelineRelease) else snap.environments
            if obj.name in table:
                first = table[obj.name]
                where = f"{first.file}:{first.line('metadata', 'name')}"
                snap.problems.append(
                    Problem(
                        fname,
                        doc.line_of(("metadata", "name")),
                        "metadata.name",
                        f"duplicate {obj.kind} {obj.name!r} (also defined at {where})",
                    )
                )
                continue
            table[obj.name] = Loaded(obj, doc)
        per_file[fname] = problems

    _check_environments(snap)
    for name in sorted(snap.releases):
        _check_release(snap, snap.releases[name])
    _check_across_releases(snap)
    _check_cycles(snap)

    # A release with any problem is Invalid; the others carry on (controller contract).
    bad_files = {p.file for p in snap.problems}
    for name, loaded in list(snap.releases.items()):
        if loaded.file in bad_files:
            snap.invalid_releases[name] = [p for p in snap.problems if p.file == loaded.file]
            del snap.releases[name]
    for loaded in (*snap.releases.values(), *snap.environments.values()):
        loaded.doc.data = None  # read by the checks above only (the objects carry it): ~7 MiB at 1,000
    snap.problems.sort()
    return snap


def _raw_name(doc: Document) -> str | None:
    md = doc.data.get("metadata") if isinstance(doc.data, dict) else None
    name = md.get("name") if isinstance(md, dict) else None
    return name if isinstance(name, str) else None


# --- environment checks ---------------------------------------------------------------------


def _check_environments(snap: RepoSnapshot) -> None:
    for name, loaded in snap.environments.items():
        env = loaded.obj
        assert isinstance(env, Environment)
        snap.problems.extend(check_secret_refs(loaded))  # allow-listed variables, the secrets dir
        snap.problems.extend(check_environment_templates(env, loaded.file, loaded.line))
        target = env.spec.canary_of
        if target is None:
            continue
        path = ("spec", "canaryOf")
        if target == name:
            snap.problems.append(
                Problem(
                    loaded.file,
                    loaded.line(*path),
                    "spec.canaryOf",
                    "an environment cannot be a canary of itself",
                )
            )
        elif target not in snap.environments:
            snap.problems.append(
                Problem(loaded.file, loaded.line(*path), "spec.canaryOf", f"unknown environment {target!r}")
            )
        elif snap.environment(target).spec.canary_of is not None:
            snap.problems.append(
                Problem(
                    loaded.file,
                    loaded.line(*path),
                    "spec.canaryOf",
                    f"{target!r} is itself a canary environment",
                )
            )


# --- release checks -------------------------------------------------------------------------


def _dupes(
    snap: RepoSnapshot, loaded: Loaded, items: Sequence[tuple[tuple[str | int, ...], str]], what: str
) -> None:
    seen: dict[str, tuple[str | int, ...]] = {}
    for path, name in items:
        if name in seen:
            snap.problems.append(
                Problem(
                    loaded.file,
                    loaded.line(*path),
                    format_path(path),
                    f"duplicate {what} {name!r} (first at line {loaded.line(*seen[name])})",
                )
            )
        else:
            seen[name] = path


# Reports a problem at a path of the release manifest.
_Add = Callable[[tuple[str | int, ...], str], None]


def _check_release(snap: RepoSnapshot, loaded: Loaded) -> None:
    rel = loaded.obj
    assert isinstance(rel, PipelineRelease)
    P = snap.problems

    def add(path: tuple[str | int, ...], msg: str) -> None:
        P.append(Problem(loaded.file, loaded.line(*path), format_path(path), msg))

    _check_duplicates(snap, loaded, rel)
    _check_files(snap, rel, add)
    _check_references(snap, rel, add)
    _check_stages(snap, rel, add)
    check_gate_templates(snap.environments, rel, add)
    check_key_columns(rel, add)
    if rel.spec.transforms:
        _check_transform_sql(snap, rel, add)


def _check_duplicates(snap: RepoSnapshot, loaded: Loaded, rel: PipelineRelease) -> None:
    """Names that must be unique within the release (schemas, topics, Hive relations, jobs, …)."""
    s = rel.spec
    _dupes(
        snap, loaded, [(("spec", "schemas", i, "name"), x.name) for i, x in enumerate(s.schemas)], "schema"
    )
    _dupes(snap, loaded, [(("spec", "topics", i, "name"), x.name) for i, x in enumerate(s.topics)], "topic")
    hive = (
        [(("spec", "tables", i, "name"), x.name) for i, x in enumerate(s.tables)]
        + [(("spec", "views", i, "name"), x.name) for i, x in enumerate(s.views)]
        + [(("spec", "transforms", i, "name"), x.name) for i, x in enumerate(s.transforms)]
    )
    _dupes(snap, loaded, hive, "table/view/transform name")
    _dupes(
        snap,
        loaded,
        [(("spec", "streamingJobs", i, "name"), x.name) for i, x in enumerate(s.streaming_jobs)],
        "streaming job",
    )
    _dupes(snap, loaded, [(("spec", "dags", i, "id"), x.id) for i, x in enumerate(s.dags)], "DAG id")
    _dupes(
        snap,
        loaded,
        [(("spec", "rollout", "gates", i, "name"), g.name) for i, g in enumerate(s.rollout.gates)],
        "gate",
    )
    _dupes(
        snap, loaded, [(("spec", "rollout", "stages", i), x) for i, x in enumerate(s.rollout.stages)], "stage"
    )
    _dupes(snap, loaded, [(("spec", "dependsOn", i), x) for i, x in enumerate(s.depends_on)], "dependency")
    for i, t in enumerate(s.tables):
        cols = [(("spec", "tables", i, "columns", j, "name"), c.name) for j, c in enumerate(t.columns)]
        cols += [
            (("spec", "tables", i, "partitionedBy", j, "name"), c.name)
            for j, c in enumerate(t.partitioned_by)
        ]
        _dupes(snap, loaded, cols, "column")


def _check_files(snap: RepoSnapshot, rel: PipelineRelease, add: _Add) -> None:
    """Files the release names: inside the repository, and schemas and Python files well-formed."""
    s = rel.spec
    for i, sc in enumerate(s.schemas):
        full, err = safe_path(snap.root, sc.path)
        if err is None and full is not None:
            err = check_schema_file(full, sc.format, sc.path)
        if err:
            add(("spec", "schemas", i, "path"), err)
    for i, job in enumerate(s.streaming_jobs):
        full, err = safe_path(snap.root, job.entrypoint)
        if err is None and full is not None:
            err = check_python_file(full, job.entrypoint)
        if err:
            add(("spec", "streamingJobs", i, "entrypoint"), err)
    for i, dag in enumerate(s.dags):
        full, err = safe_path(snap.root, dag.path)
        if err is None and full is not None:
            err = check_python_file(full, dag.path)
        if err:
            add(("spec", "dags", i, "path"), err)
    for i, tr in enumerate(s.transforms):
        _, err = safe_path(snap.root, tr.sql)
        if err:
            add(("spec", "transforms", i, "sql"), err)


def _check_references(snap: RepoSnapshot, rel: PipelineRelease, add: _Add) -> None:
    """Schemas, topics, tables and releases the release refers to must exist (its own, or those of
    the releases it dependsOn)."""
    s = rel.spec
    schemas = {x.name for x in s.schemas}
    upstream = [snap.release(d) for d in s.depends_on if d in snap.releases]
    topics = {t.name for t in s.topics} | {t.name for r in upstream for t in r.spec.topics}
    tables = {t.name for t in s.tables} | {t.name for r in upstream for t in r.spec.tables}
    relations = tables | {x.name for x in s.transforms} | {v.name for r in upstream for v in r.spec.views}
    relations |= {t.name for r in upstream for t in r.spec.transforms}
    for i, topic in enumerate(s.topics):
        for key, ref in (("valueSchema", topic.value_schema), ("keySchema", topic.key_schema)):
            if ref is not None and ref not in schemas:
                add(("spec", "topics", i, key), f"unknown schema {ref!r}")
    for i, job in enumerate(s.streaming_jobs):
        for j, src in enumerate(job.sources):
            if src.topic not in topics:
                add(("spec", "streamingJobs", i, "sources", j, "topic"), f"unknown topic {src.topic!r}")
        for j, sink in enumerate(job.sinks):
            if sink.table not in {t.name for t in s.tables}:
                add(("spec", "streamingJobs", i, "sinks", j, "table"), f"unknown table {sink.table!r}")
    for i, v in enumerate(s.views):
        if v.table not in relations:
            add(("spec", "views", i, "table"), f"unknown table {v.table!r}")
    for i, dep in enumerate(s.depends_on):
        if dep == rel.name:
            add(("spec", "dependsOn", i), "a release cannot depend on itself")
        elif dep not in snap.releases and dep not in snap.invalid_releases:
            add(("spec", "dependsOn", i), f"unknown release {dep!r}")


def _check_stages(snap: RepoSnapshot, rel: PipelineRelease, add: _Add) -> None:
    """The rollout's stages are Environments; gates and overrides name stages of the rollout; a
    canary stage comes before its target."""
    s = rel.spec
    stages = s.rollout.stages
    for i, st in enumerate(stages):
        if st not in snap.environments and st not in snap.invalid_environments:
            add(("spec", "rollout", "stages", i), f"unknown stage {st!r} (no Environment named so)")
    for i, g in enumerate(s.rollout.gates):
        for j, st in enumerate(g.stages or []):
            if st not in stages:
                add(("spec", "rollout", "gates", i, "stages", j), f"stage {st!r} is not in rollout.stages")
    topics = {t.name for t in s.topics}
    for st, ov in s.rollout.overrides.items():
        if st not in stages:
            add(("spec", "rollout", "overrides", st), f"stage {st!r} is not in rollout.stages")
        target = snap.environment(st).spec.canary_of if st in snap.environments else None
        for name in ov.topics:
            where = ("spec", "rollout", "overrides", st, "topics", name)
            if name not in topics:
                add(where, f"unknown topic {name!r} (not in spec.topics)")
            elif target is not None:
                add(where, f"canary stage {st!r} uses {target!r}'s topics: override them under {target!r}")
    for i, st in enumerate(stages):
        if st in snap.environments:
            target = snap.environment(st).spec.canary_of
            if target is not None and target not in stages[i + 1 :]:
                add(("spec", "rollout", "stages", i), f"canary stage {st!r} must come before {target!r}")


def _check_transform_sql(
    snap: RepoSnapshot, rel: PipelineRelease, add: Callable[[tuple[str | int, ...], str], None]
) -> None:
    """Template, syntax, undeclared tables, unknown refs and columns, ref cycles: each reported on
    the SQL file's own line, and once more on ``spec.transforms[i].sql`` so the release is Invalid."""
    from controller.plan.transforms import check_release  # imports sqlglot: only when needed

    def read(path: str) -> bytes:
        full, err = safe_path(snap.root, path)
        if full is None:
            raise OSError(err)
        return full.read_bytes()

    def shown(path: str) -> str:
        if snap.display_root is None or snap.display_root == snap.root:
            return path
        return str(snap.display_root / path)

    upstream = [snap.release(d) for d in rel.spec.depends_on if d in snap.releases]
    found: dict[int, list[str]] = {}
    for p in check_release(rel, read, upstream):
        if p.field == "sql":
            continue  # an unreadable SQL file is reported with the files above
        if p.field:
            add(("spec", "transforms", p.transform, p.field), p.message)
            continue
        snap.problems.append(Problem(shown(p.file), p.line, "", p.message))
        found.setdefault(p.transform, []).append(f"{shown(p.file)}:{p.line}: {p.message}")
    for i, texts in sorted(found.items()):
        more = f" (and {len(texts) - 1} more)" if len(texts) > 1 else ""
        add(("spec", "transforms", i, "sql"), texts[0] + more)


_KIND_PATHS = (
    ("topics", "name", "topic"),
    ("tables", "name", "table"),
    ("views", "name", "view"),
    ("transforms", "name", "transform"),
    ("streamingJobs", "name", "streaming job"),
    ("dags", "id", "DAG"),
)


def _check_across_releases(snap: RepoSnapshot) -> None:
    owners: dict[tuple[str, str], tuple[str, Loaded, tuple[str | int, ...]]] = {}
    for rname in sorted(snap.releases):
        loaded = snap.releases[rname]
        data = loaded.doc.data["spec"]
        for key, field_, what in _KIND_PATHS:
            ns = "hive" if key in {"tables", "views", "transforms"} else key
            for i, item in enumerate(data.get(key) or []):
                name = item.get(field_)
                path = ("spec", key, i, field_)
                if (ns, name) in owners and owners[(ns, name)][0] != rname:
                    other, oloaded, opath = owners[(ns, name)]
                    snap.problems.append(
                        Problem(
                            loaded.file,
                            loaded.line(*path),
                            format_path(path),
                            f"{what} {name!r} is already declared by release {other!r} "
                            f"({oloaded.file}:{oloaded.line(*opath)})",
                        )
                    )
                elif (ns, name) not in owners:
                    owners[(ns, name)] = (rname, loaded, path)


def _check_cycles(snap: RepoSnapshot) -> None:
    graph = {n: [d for d in snap.release(n).spec.depends_on if d in snap.releases] for n in snap.releases}
    reported: set[frozenset[str]] = set()
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(n: str) -> None:
        color[n] = GREY
        stack.append(n)
        for d in graph[n]:
            if color[d] == GREY:
                cycle = [*stack[stack.index(d) :], d]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    loaded = snap.releases[cycle[0]]
                    idx = snap.release(cycle[0]).spec.depends_on.index(cycle[1])
                    snap.problems.append(
                        Problem(
                            loaded.file,
                            loaded.line("spec", "dependsOn", idx),
                            f"spec.dependsOn[{idx}]",
                            "dependency cycle: " + " → ".join(cycle),
                        )
                    )
            elif color[d] == WHITE:
                visit(d)
        stack.pop()
        color[n] = BLACK

    for n in sorted(graph):
        if color[n] == WHITE:
            visit(n)


def validate_paths(paths: list[Path]) -> list[Problem]:
    """Validate repos or files; problems of the given files (or whole repos) are returned."""
    problems: list[Problem] = []
    seen_roots: dict[Path, RepoSnapshot] = {}
    cwd = Path.cwd()
    for p in paths:
        if not p.exists():
            problems.append(Problem(str(p), 0, "", "no such file or directory"))
            continue
        root = find_repo_root(p.resolve())
        if root not in seen_roots:
            try:
                display = root.relative_to(cwd)
            except ValueError:
                display = root
            seen_roots[root] = load_repo(root, display_root=display)
        snap = seen_roots[root]
        if p.is_dir():
            problems.extend(snap.problems)
        else:
            try:
                display_file = str(p.resolve().relative_to(cwd))
            except ValueError:
                display_file = str(p.resolve())
            file_problems = [x for x in snap.problems if Path(x.file).resolve() == p.resolve()]
            if not (
                p.resolve().parent.name in MANIFEST_DIRS or p.resolve().parent.parent.name in MANIFEST_DIRS
            ):
                # a file outside the repo layout: validate it on its own
                file_problems = _validate_single(p, display_file)
            problems.extend(file_problems)
    return sorted(set(problems))


def _validate_single(p: Path, display: str) -> list[Problem]:
    text, problem = decode_utf8(p.read_bytes(), display)
    if problem:
        return [problem]
    assert text is not None
    docs, problems = load_documents(text, display)
    for doc in docs:
        problems.extend(parse_object(doc)[1])
    return problems
