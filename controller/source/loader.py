"""Safe YAML loading that remembers where every value came from.

``load_documents`` returns plain Python data and, when first asked, a table of ``path → line`` so
that any later check can report ``file:line: field.path: message``: the table is built by reading
the document again, since a valid manifest never needs it (at 1,000 manifests the tables would
stay in memory for the controller's life). It refuses what a manifest never needs and an
attacker might send: invalid UTF-8, duplicate keys, merge keys, recursive aliases, and alias
expansion past a fixed budget (billion-laughs), failing before anything walks the expanded tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.model.errors import Problem

Path_ = tuple[str | int, ...]

MAX_EXPANDED_NODES = 100_000
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64
"""Nesting levels a document may have (aliases expanded); a manifest needs fewer than ten."""


@dataclass
class Document:
    """One YAML document: data, the file it came from, and the line of every path in it."""

    file: str
    data: Any
    start_line: int = 1
    text: str = field(default="", repr=False)
    """The YAML stream the document was read from (shared by the stream's documents)."""
    index: int = 0
    """Its position among the stream's documents."""
    _lines: dict[Path_, int] | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> dict[Path_, int]:
        """path → line, read again from ``text`` on first use."""
        if self._lines is None:
            self._lines = _lines_of(self.text, self.index)
        return self._lines

    def line_of(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.start_line


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


class _LoadError(Exception):
    def __init__(self, line: int, message: str, path: Path_ = ()):
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


def _too_deep(node: yaml.Node) -> _LoadError:
    return _LoadError(node.start_mark.line + 1, f"YAML nesting is deeper than {MAX_DEPTH} levels")


def _expanded_size(
    node: yaml.Node, memo: dict[int, tuple[int, int]], active: set[int], depth: int = 0
) -> tuple[int, int]:
    """(nodes, height) of ``node`` with aliases expanded; refuses recursion, bombs and deep nesting
    at the line of the node where the limit is crossed."""
    key = id(node)
    if key in memo:
        size, height = memo[key]
        if depth + height > MAX_DEPTH:  # an alias that puts a shared subtree too deep
            raise _too_deep(node)
        return size, height
    if key in active:
        raise _LoadError(node.start_mark.line + 1, "recursive alias is not allowed")
    if depth > MAX_DEPTH:
        raise _too_deep(node)
    active.add(key)
    size, height = 1, 0
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for kv in node.value for n in kv]
    for child in children:
        n, h = _expanded_size(child, memo, active, depth + 1)
        size, height = size + n, max(height, h + 1)
        if size > MAX_EXPANDED_NODES:
            break
    active.discard(key)
    if size > MAX_EXPANDED_NODES:
        raise _LoadError(
            node.start_mark.line + 1,
            f"document expands to more than {MAX_EXPANDED_NODES} nodes through aliases; refusing to load it",
        )
    memo[key] = (size, height)
    return size, height


def _reader_line(text: str, position: int) -> int:
    """The 1-based line of character ``position``, counting line breaks as YAML's reader does."""
    head = text[:position].replace("\r\n", "\n")
    return 1 + sum(head.count(c) for c in ("\n", "\r", "\x85", "\u2028", "\u2029"))


class _Converter:
    def __init__(self, loader: yaml.SafeLoader | yaml.CSafeLoader, lines: dict[Path_, int] | None = None):
        self.loader = loader
        self.lines = lines
        """Filled with every path's line when given."""

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        if self.lines is not None:
            self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            key_lines: dict[str, int] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise _LoadError(
                        knode.start_mark.line + 1, "YAML merge keys (<<) are not supported", path
                    )
                if not isinstance(knode, yaml.ScalarNode):
                    raise _LoadError(knode.start_mark.line + 1, "mapping keys must be plain scalars", path)
                key = self.scalar(knode, path)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise _LoadError(
                        knode.start_mark.line + 1,
                        f"duplicate key {key!r} (first on line {key_lines[key]})",
                        (*path, key),
                    )
                key_lines[key] = knode.start_mark.line + 1
                if self.lines is not None:
                    self.lines[(*path, key)] = key_lines[key]
                out[key] = self.convert(vnode, (*path, key))
            return out
        raise _LoadError(node.start_mark.line + 1, f"unsupported YAML node {type(node).__name__}", path)

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        """The value of a scalar; a tagged value that does not convert (``!!int 0xZZ``, an integer of
        more digits than Python converts) is a problem on its line, not an exception."""
        try:
            return self.loader.construct_object(node, deep=True)
        # IndexError: PyYAML's int constructor on an empty value (``!!int ""``)
        except (ValueError, TypeError, AttributeError, OverflowError, IndexError) as e:
            value = node.value if len(node.value) <= 40 else node.value[:40] + "…"
            raise _LoadError(
                node.start_mark.line + 1, f"cannot read {value!r} as {node.tag.rsplit(':', 1)[-1]}: {e}", path
            ) from None


def decode_utf8(raw: bytes, file: str) -> tuple[str | None, Problem | None]:
    if len(raw) > MAX_FILE_BYTES:
        return None, Problem(file, 0, "", f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return None, Problem(
            file, line, "", f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        )


_CLOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)
"""libyaml's parser with PyYAML's safe constructor, when PyYAML was built with libyaml (its wheels
are). It composes ~4x faster: 3.4 → 0.8 s for the 1,000 manifests of ``bench/bench_scale.py``,
which the controller reads again at every new commit."""


_PURE_ONLY = ("\t", "\ufeff")
"""Characters libyaml takes where PyYAML does not (a tab inside a plain scalar, a byte-order mark
after a document's end): text with one goes to PyYAML alone."""


def load_documents(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document of a YAML stream. A syntax error stops the file (one Problem).

    A stream is read with libyaml first; any problem at all sends it to PyYAML's own parser,
    whose messages and marks are the ones reported (and the ones the tests pin). Wherever PyYAML
    reads a text, libyaml reads the same data and lines; libyaml also takes a few texts PyYAML
    refuses (a ``?`` inside a plain scalar of a flow mapping), and those it reads its own way
    (``tests/unit/source/test_loader_fast.py``)."""
    fast = _load_fast(text, file)
    return (fast, []) if fast is not None else _load_pure(text, file)


def _documents(loader: yaml.SafeLoader | yaml.CSafeLoader, text: str, file: str) -> Iterator[Document]:
    index = 0
    while loader.check_node():
        node = loader.get_node()
        if node is None:
            continue
        _expanded_size(node, {}, set())
        data = _Converter(loader).convert(node, ())
        yield Document(file=file, data=data, start_line=node.start_mark.line + 1, text=text, index=index)
        index += 1


def _load_fast(text: str, file: str) -> list[Document] | None:
    """The documents as libyaml reads them; None when it is not there or finds any problem."""
    if _CLOADER is None or any(c in text for c in _PURE_ONLY):
        return None
    try:
        yaml.reader.Reader(text)  # PyYAML's check of the characters YAML allows (libyaml has its own)
        loader = _CLOADER(text)
    except Exception:
        return None
    try:
        return list(_documents(loader, text, file))
    except Exception:  # reported by the pure-Python parse, in its words
        return None
    finally:
        loader.dispose()


def _load_pure(text: str, file: str) -> tuple[list[Document], list[Problem]]:
    docs: list[Document] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (checked for the whole text)
        line = _reader_line(text, e.position)
        return docs, [Problem(file, line, "", f"character {chr(e.character)!r} is not allowed in YAML")]
    try:
        for doc in _documents(loader, text, file):
            docs.append(doc)
    except _LoadError as e:
        return docs, [Problem(file, e.line, format_path(e.path), e.message)]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = (mark or loader.get_mark()).line + 1
        msg = "YAML syntax error: " + " ".join(p for p in (e.context, e.problem) if p)
        return docs, [Problem(file, line, "", msg)]
    except yaml.YAMLError as e:
        return docs, [Problem(file, loader.get_mark().line + 1, "", f"YAML error: {e}")]
    except RecursionError:  # composing a deeply nested document: where the parser got to
        line = loader.get_mark().line + 1
        return docs, [Problem(file, line, "", f"YAML nesting is deeper than {MAX_DEPTH} levels")]
    finally:
        loader.dispose()
    return docs, []


def iter_yaml_files(root: Any) -> Iterator[Any]:
    """YAML files below ``root`` (a pathlib.Path), sorted, skipping hidden directories."""
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_file() and p.suffix in {".yaml", ".yml"}:
            yield p


def _lines_of(text: str, index: int) -> dict[Path_, int]:
    """path → line of document ``index`` of ``text``, which ``load_documents`` read without error.
    Read by PyYAML: wherever it reads a text, libyaml gives the same lines."""
    lines: dict[Path_, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        found = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if found == index:
                _Converter(loader, lines).convert(node, ())
                break
            found += 1
    except (_LoadError, yaml.YAMLError, RecursionError):
        pass  # a text only libyaml reads (``{a: n? ull}``): every path reports the document's first line
    finally:
        loader.dispose()
    return lines
