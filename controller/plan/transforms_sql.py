"""Steps 1 and 2 of compiling a SQL transform (stage independent, pure): the template and the parse.

**Template.** The only template form is ``{{ ref('db.name') }}``; any other ``{{ … }}``, ``{% … %}``
or ``{# … #}`` is an error. Each ref is replaced by a placeholder table (newlines kept), so the SQL
parses and every line number is the SQL file's own.

**Parse** with sqlglot, dialect presto. A syntax error carries the file's line. A transform is one
query (SELECT, UNION, WITH …). A table named without ``ref()`` is an undeclared dependency and an
error (CTE names are not tables).

Also the errors of the transform compiler: ``SqlProblem`` (one problem, with its file and line) and
``TransformError`` (every problem of a release). The steps that follow are in
``controller.plan.transforms`` (the overview) and its ``transforms_*`` siblings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from controller.model.errors import PipectlError
from controller.model.identifiers import HIVE_IDENT_RE

DIALECT = "presto"

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_REF = re.compile(r"\{\{\s*ref\(\s*(?:'([^'\\\n]*)'|\"([^\"\\\n]*)\")\s*\)\s*\}\}")
_OPEN = re.compile(r"\{\{|\{%|\{#")
PLACEHOLDER = "__pipectl_ref_{}"  # the table a ref stands for until a stage resolves it
_PLACEHOLDER_RE = re.compile(r"__pipectl_ref_(\d+)")
_BAD = "__pipectl_template__"  # stands for a template expression that is reported already
_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")

Problem = Callable[[int, str], None]


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SqlProblem:
    """A problem of one transform: in its SQL file (``file:line``) or, with ``field``, in the
    manifest field ``spec.transforms[transform].<field>``."""

    file: str
    line: int
    message: str
    transform: int = 0
    field: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class TransformError(PipectlError):
    """A release's transforms cannot be compiled; carries every problem found."""

    def __init__(self, problems: Sequence[SqlProblem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- step 1 and 2: template and parse (stage independent) -------------------------------------


@dataclass(frozen=True)
class RefSite:
    name: str
    line: int


@dataclass
class ParsedSql:
    """One SQL file: its refs (in order of appearance) and its tree with placeholder tables."""

    file: str
    refs: list[RefSite] = field(default_factory=list)
    tree: exp.Query | None = None
    problems: list[SqlProblem] = field(default_factory=list)

    @property
    def ref_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.refs:
            seen.setdefault(r.name)
        return list(seen)


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, max(0, min(pos, len(text)))) + 1


def _deepest_line(text: str) -> int:
    """The line where parentheses nest deepest (strings and comments are not told apart)."""
    depth = deepest = 0
    line = at = 1
    for ch in text:
        if ch == "\n":
            line += 1
        elif ch == "(":
            depth += 1
            if depth > deepest:
                deepest, at = depth, line
        elif ch == ")":
            depth -= 1
    return at


def parse_sql(text: str, file: str, transform: int = 0) -> ParsedSql:
    """Template and syntax checks of one transform's SQL; never raises."""
    out = ParsedSql(file=file)

    def problem(line: int, message: str) -> None:
        out.problems.append(SqlProblem(file, line, message, transform))

    sql = _render_refs(text, out.refs, problem)
    leftover = _OPEN.search(sql)
    if leftover:
        problem(_line_at(sql, leftover.start()), "unclosed template expression")
        return out
    tree = _parse_query(sql, problem)
    if tree is None:
        return out
    _check_undeclared_tables(tree, problem)
    if not out.problems:
        out.tree = tree
    return out


def _render_refs(text: str, refs: list[RefSite], problem: Problem) -> str:
    """Step 1: the SQL with every ``{{ ref('db.name') }}`` replaced by its placeholder table (and
    every other template expression by a stand-in, reported); the sites found go to ``refs``."""
    slots: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        pieces.append(text[pos : m.start()])
        pos = m.end()
        line = _line_at(text, m.start())
        ref = _REF.fullmatch(m.group(0))
        newlines = "\n" * m.group(0).count("\n")
        if ref is None:
            shown = " ".join(m.group(0).split())
            problem(
                line, f"unsupported template expression {shown}: only {{{{ ref('db.name') }}}} is allowed"
            )
            pieces.append(f'"{_BAD}"' + newlines)
            continue
        name = ref.group(1) if ref.group(1) is not None else ref.group(2)
        if not _is_qualified(name):
            problem(line, f"ref({name!r}): expected 'db.name' (lower-case identifiers)")
            pieces.append(f'"{_BAD}"' + newlines)
            continue
        slot = slots.setdefault(name, len(slots))
        refs.append(RefSite(name, line))
        pieces.append(f'"{PLACEHOLDER.format(slot)}"' + newlines)
    pieces.append(text[pos:])
    return "".join(pieces)


def _parse_query(sql: str, problem: Problem) -> exp.Query | None:
    """Step 2: the one query of the rendered SQL; None (and the problem reported) otherwise."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        line = int(first.get("line") or 1)
        desc = _friendly(str(first.get("description") or e).split("\n")[0])
        near = str(first.get("highlight") or "").strip()
        problem(line, f"SQL syntax error: {desc}" + (f" (near {near!r})" if near else ""))
        return None
    except RecursionError:  # sqlglot's parser recurses per nesting level
        problem(_deepest_line(sql), "SQL nesting is too deep to parse")
        return None
    except TokenError as e:
        start = getattr(e, "start", None)
        end = getattr(e, "end", None)
        at = (start + 50 if start else end) if (start is not None or end is not None) else 0
        problem(_line_at(sql, at or 0), "SQL syntax error: unterminated string, identifier or comment")
        return None
    if not statements:
        problem(1, "the SQL file holds no query")
        return None
    if len(statements) > 1:
        problem(node_line(statements[1], 1), "a transform is one query; found more than one statement")
        return None
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        problem(node_line(tree, 1), f"a transform is a query (SELECT …), not {tree.key.upper()}")
        return None
    return tree


def _check_undeclared_tables(tree: exp.Query, problem: Problem) -> None:
    """Every table the query names must be a ref (a placeholder) or a CTE of the query."""
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for tb in tree.find_all(exp.Table):
        name = tb.name
        if not name or not isinstance(tb.this, exp.Identifier):
            continue
        if (_PLACEHOLDER_RE.fullmatch(name) or name == _BAD) and not tb.db:
            continue
        if not tb.db and not tb.catalog and name.lower() in ctes:
            continue
        shown = ".".join(p for p in (tb.catalog, tb.db, name) if p)
        hint = f"{{{{ ref('{tb.db}.{name}') }}}}" if tb.db and not tb.catalog else "{{ ref('db.name') }}"
        problem(
            node_line(tb, 1),
            f"table {shown} is referenced without ref() (undeclared dependency): write {hint}",
        )


def _friendly(desc: str) -> str:
    """sqlglot's "Required keyword: 'this' missing for <class '…Where'>" → "incomplete WHERE"."""
    m = _MISSING.search(desc)
    return f"incomplete {m.group(1).upper()}" if m else desc


def _is_qualified(name: str) -> bool:
    db, dot, table = name.partition(".")
    return bool(dot) and bool(HIVE_IDENT_RE.fullmatch(db)) and bool(HIVE_IDENT_RE.fullmatch(table))


def node_line(node: exp.Expr, default: int) -> int:
    """The first source line sqlglot recorded in ``node``'s subtree; ``default`` without one."""
    for n in node.walk():
        meta = getattr(n, "meta", None) if isinstance(n, exp.Expr) else None
        if meta and "line" in meta:
            return int(meta["line"])
    return default
