"""``-o/--output`` as kubectl has it: ``table`` (the default), ``wide``, ``json``, ``yaml``, ``name``,
``jsonpath=TEMPLATE`` and ``custom-columns=SPEC``.

Every verb names the formats it supports (``output_option(...)``); anything else exits 2 with
that list before the verb runs.

JSONPath templates are kubectl's subset, evaluated with ``jsonpath-ng`` (its extended parser, so
filters like ``[?(@.type=="Ready")]`` work): text with ``{EXPR}`` parts, where ``EXPR`` starts at
the object (``{.items[*].metadata.name}``), ``{range EXPR}…{end}`` repeats its body for each match
(inside, expressions start at the match) and ``{"\\n"}``/``{"\\t"}`` are literals. Several matches
of one expression print space-separated; maps and lists print as JSON. A template without any
``{`` is one expression (``jsonpath=.items[0].metadata.name``).

Custom columns: ``custom-columns=NAME:.metadata.name,PHASE:.status.phase`` (one row per item of
a list, each column a JSONPath expression; several matches are joined with ``,``; none is
``<none>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from controller.cli.render import dump, plain_table

TABLE, WIDE, JSON, YAML, NAME = "table", "wide", "json", "yaml", "name"
JSONPATH, CUSTOM_COLUMNS = "jsonpath", "custom-columns"
ALL = (TABLE, WIDE, JSON, YAML, NAME, JSONPATH, CUSTOM_COLUMNS)
STRUCTURED = (JSON, YAML, JSONPATH, CUSTOM_COLUMNS)
_SHOWN = {JSONPATH: "jsonpath=TEMPLATE", CUSTOM_COLUMNS: "custom-columns=SPEC"}


class OutputError(ValueError):
    """A format or template that cannot be used (exit 2)."""


@dataclass(frozen=True)
class Output:
    kind: str
    arg: str = ""

    @property
    def structured(self) -> bool:
        return self.kind in STRUCTURED


def formats_text(allowed: Sequence[str]) -> str:
    return ", ".join(_SHOWN.get(f, f) for f in allowed)


def parse_output(value: str | None, allowed: Sequence[str] = ALL) -> Output:
    """The format of ``value`` ("" is ``table``); ``OutputError`` for one not in ``allowed``."""
    text = (value or "").strip()
    kind, sep, arg = text.partition("=")
    kind = kind or TABLE
    if sep and kind not in (JSONPATH, CUSTOM_COLUMNS):
        kind = text  # "json=x" is no format
    if kind not in allowed or (kind in (JSONPATH, CUSTOM_COLUMNS) and not arg.strip()):
        raise OutputError(f'unknown output format "{text}": use one of {formats_text(allowed)}')
    out = Output(kind, arg.strip())
    if kind == JSONPATH:
        _template(out.arg)  # a broken template is a usage error too
    elif kind == CUSTOM_COLUMNS:
        _columns(out.arg)
    return out


def output_option(*allowed: str, default: str = "") -> Any:
    """A ``-o/--output`` option accepting ``allowed`` formats (exit 2 with the list otherwise)."""

    def check(value: str) -> str:
        try:
            parse_output(value, allowed)
        except OutputError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        return value

    return typer.Option(default, "--output", "-o", callback=check, help=formats_text(allowed))


# --- rendering -------------------------------------------------------------------------------------


def render(
    obj: Any,
    out: Output,
    *,
    table: Callable[[], str] | None = None,
    names: Callable[[], list[str]] | None = None,
) -> str:
    """``obj`` (a List object with ``items``, a list, or one object) in the format ``out``."""
    if out.kind in (JSON, YAML):
        return dump(obj, out.kind)
    if out.kind == JSONPATH:  # the caller's echo ends the line: a template's own last \n is dropped
        return evaluate(out.arg, _plain(obj)).removesuffix("\n")
    if out.kind == CUSTOM_COLUMNS:
        items = obj if isinstance(obj, list) else obj.get("items") if "items" in obj else [obj]
        return custom_columns(out.arg, [_plain(i) for i in items or []])
    if out.kind == NAME:
        if names is None:
            raise OutputError("-o name is not supported here")
        return "\n".join(names())
    if table is None:
        raise OutputError(f"-o {out.kind} is not supported here")
    return table()


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# --- JSONPath --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\{((?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*)\}")


@dataclass(frozen=True)
class _Node:
    kind: str  # text | expr | range
    value: str = ""
    body: tuple[_Node, ...] = ()


def _expr(text: str) -> Any:
    from jsonpath_ng.ext.parser import parse

    e = text.strip()
    if e.startswith("."):
        e = "$" + e
    elif not e.startswith("$") and not e.startswith("@"):
        e = "$." + e
    try:
        return parse(e)
    except Exception as err:  # the lexer and parser raise several types
        raise OutputError(f"bad JSONPath expression {text.strip()!r}: {err}") from None


def _template(text: str) -> tuple[_Node, ...]:
    if "{" not in text:
        _expr(text)
        return (_Node("expr", text),)
    stack: list[list[_Node]] = [[]]
    ranges: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            stack[-1].append(_Node("text", text[pos : m.start()]))
        pos = m.end()
        inner = m.group(1).strip()
        if inner.startswith('"') and inner.endswith('"') and len(inner) >= 2:
            stack[-1].append(_Node("text", json.loads(inner)))
        elif inner.startswith("range "):
            _expr(inner[6:])
            ranges.append(inner[6:].strip())
            stack.append([])
        elif inner == "end":
            if not ranges:
                raise OutputError("JSONPath template: {end} without {range}")
            body = tuple(stack.pop())
            stack[-1].append(_Node("range", ranges.pop(), body))
        else:
            _expr(inner)
            stack[-1].append(_Node("expr", inner))
    rest = text[pos:]
    if "{" in rest or "}" in rest:
        raise OutputError(f"JSONPath template: unbalanced braces in {text!r}")
    if rest:
        stack[-1].append(_Node("text", rest))
    if ranges:
        raise OutputError("JSONPath template: {range} without {end}")
    return tuple(stack[0])


def _values(expr: str, data: Any) -> list[Any]:
    return [m.value for m in _expr(expr).find(data)]


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _run(nodes: Sequence[_Node], data: Any) -> str:
    out: list[str] = []
    for n in nodes:
        if n.kind == "text":
            out.append(n.value)
        elif n.kind == "expr":
            out.append(" ".join(_show(v) for v in _values(n.value, data)))
        else:
            out.extend(_run(n.body, item) for item in _values(n.value, data))
    return "".join(out)


def evaluate(template: str, data: Any) -> str:
    """A kubectl JSONPath template applied to ``data``."""
    return _run(_template(template), data)


# --- custom columns --------------------------------------------------------------------------------


def _columns(spec: str) -> list[tuple[str, str]]:
    cols = []
    for part in spec.split(","):
        header, sep, expr = part.partition(":")
        if not sep or not header.strip() or not expr.strip():
            raise OutputError(f"custom-columns: expected HEADER:.json.path, got {part!r}")
        inner = expr.strip()
        if inner.startswith("{") and inner.endswith("}"):
            inner = inner[1:-1]
        _expr(inner)
        cols.append((header.strip(), inner))
    return cols


def custom_columns(spec: str, items: Sequence[Any]) -> str:
    cols = _columns(spec)
    rows = []
    for item in items:
        row = []
        for _, expr in cols:
            vals = _values(expr, item)
            row.append(",".join(_show(v) for v in vals) if vals else "<none>")
        rows.append(row)
    return plain_table([h for h, _ in cols], rows)
