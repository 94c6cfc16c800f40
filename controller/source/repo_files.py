"""The files a release names (schemas, job entrypoints, DAGs, SQL): inside the repository, and
well-formed where pipectl can tell (UTF-8 Python that parses, JSON or Avro schemas that parse).

Each check returns an error message (or None); ``controller.source.validate`` reports it on the
manifest field that names the file.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from controller.model.manifest import SchemaFormat
from controller.source.loader import decode_utf8


def safe_path(root: Path, rel_path: str) -> tuple[Path | None, str | None]:
    """Resolve a repo-relative path; refuse absolute paths and anything escaping the root."""
    if not rel_path or Path(rel_path).is_absolute():
        return None, f"path {rel_path!r} must be relative to the repository root"
    full = (root / rel_path).resolve()
    if full != root and root not in full.parents:
        return None, f"path {rel_path!r} escapes the repository root"
    if not full.is_file():
        return None, f"file {rel_path!r} does not exist"
    return full, None


def _read_text(full: Path, rel_path: str) -> tuple[str | None, str | None]:
    """The file's text, or an error that names the file (``rel_path:line: message``)."""
    text, problem = decode_utf8(full.read_bytes(), rel_path)
    return (None, str(problem)) if problem else (text, None)


def check_python_file(full: Path, rel_path: str) -> str | None:
    text, err = _read_text(full, rel_path)
    if err:
        return err
    try:
        ast.parse(text or "", filename=rel_path)
    except SyntaxError as e:  # a NUL byte is a SyntaxError without a line
        at = f":{e.lineno}" if e.lineno else ""
        return f"{rel_path}{at}: Python syntax error: {e.msg}"
    except (RecursionError, MemoryError, ValueError) as e:  # nesting past the parser's limits
        return f"{rel_path}: Python file cannot be parsed: {type(e).__name__}: {e}"
    return None


def check_schema_file(full: Path, fmt: SchemaFormat, rel_path: str) -> str | None:
    """Every message names the schema file (``schemas/x.avsc: invalid Avro schema: …``): the
    manifest line it is reported on is the one that references the file, not the file itself."""
    text, err = _read_text(full, rel_path)
    if err:
        return err
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as e:
        return f"{rel_path}:{e.lineno}: invalid JSON: {e.msg}"
    except RecursionError:
        return f"{rel_path}: invalid JSON: nested too deeply"
    if fmt is SchemaFormat.AVRO:
        import avro.errors
        import avro.schema

        try:
            avro.schema.parse(json.dumps(data))
        except (avro.errors.AvroException, ValueError, TypeError, KeyError) as e:
            return f"{rel_path}: invalid Avro schema: {e}"
        except RecursionError:
            return f"{rel_path}: invalid Avro schema: nested too deeply"
    elif not isinstance(data, dict):
        return f"{rel_path}: a JSON schema must be an object"
    return None
