"""Small rooms: no module under controller/ over 600 lines, no function or method over 80 lines,
and the reconciler (controller/engine/reconciler.py) at most 500 lines.

A function's length is ``end_lineno - lineno + 1`` of its ``def`` (decorators are not counted).
Run from the repository root (``make lint`` does): prints one line per violation and exits 1 when
there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Modules with a tighter limit than MAX_MODULE_LINES, relative to the root passed to check_tree.
MODULE_LIMITS: dict[str, int] = {"controller/engine/reconciler.py": 500}


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def check_file(path: Path, shown: str, max_module_lines: int = MAX_MODULE_LINES) -> list[str]:
    """The violations of one Python file (``shown``: its path as printed)."""
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []
    lines = len(text.splitlines())
    if lines > max_module_lines:
        problems.append(f"{shown}: {lines} lines (max {max_module_lines})")
    tree = ast.parse(text, filename=shown)
    for fn in sorted(_functions(tree), key=lambda f: f.lineno):
        end = fn.end_lineno if fn.end_lineno is not None else fn.lineno
        length = end - fn.lineno + 1
        if length > MAX_FUNCTION_LINES:
            problems.append(
                f"{shown}:{fn.lineno}: function {fn.name} is {length} lines (max {MAX_FUNCTION_LINES})"
            )
    return problems


def check_tree(root: Path, package: str = "controller") -> list[str]:
    """The violations of every ``<root>/<package>/**/*.py``, in path order."""
    problems: list[str] = []
    for path in sorted((root / package).rglob("*.py")):
        shown = path.relative_to(root).as_posix()
        problems += check_file(path, shown, MODULE_LIMITS.get(shown, MAX_MODULE_LINES))
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    problems = check_tree(root)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
