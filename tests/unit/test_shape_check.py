"""tests/shape_check.py: too-long functions and modules under controller/ are reported, small
modules are not."""

from __future__ import annotations

from pathlib import Path

from tests.shape_check import check_tree, main


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_small_module_reports_nothing(tmp_path: Path) -> None:
    _write(tmp_path, "controller/small.py", '"""Small."""\n\n\ndef f() -> int:\n    return 1\n')
    assert check_tree(tmp_path) == []
    assert main([str(tmp_path)]) == 0


def test_long_function_and_long_module_are_reported(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(85))
    # decorators are not counted: the def line, 85 statements and the return = 87 lines
    _write(tmp_path, "controller/pkg/long_fn.py", f"import functools\n\n\n@functools.cache\ndef big() -> int:\n{body}    return 0\n")
    _write(tmp_path, "controller/long_mod.py", "x = 1\n" * 601)
    problems = check_tree(tmp_path)
    assert problems == [
        "controller/long_mod.py: 601 lines (max 600)",
        "controller/pkg/long_fn.py:5: function big is 87 lines (max 80)",
    ]
    assert main([str(tmp_path)]) == 1


def test_limits_are_inclusive_and_methods_count(tmp_path: Path) -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(78))
    _write(tmp_path, "controller/ok.py", f"class C:\n    def m(self) -> int:\n{body}        return 0\n")
    assert check_tree(tmp_path) == []  # 80 lines exactly
    _write(tmp_path, "controller/ok.py", f"class C:\n    def m(self) -> int:\n{body}        y = 1\n        return y\n")
    assert check_tree(tmp_path) == ["controller/ok.py:2: function m is 81 lines (max 80)"]


def test_reconciler_has_a_tighter_limit(tmp_path: Path) -> None:
    _write(tmp_path, "controller/engine/reconciler.py", "x = 1\n" * 501)
    _write(tmp_path, "controller/engine/other.py", "x = 1\n" * 501)
    assert check_tree(tmp_path) == ["controller/engine/reconciler.py: 501 lines (max 500)"]
