"""libyaml reads manifests for ``load_documents`` as PyYAML's own parser does: wherever PyYAML
reads a text, the same data and document lines; every problem in PyYAML's words. libyaml also
takes a few texts PyYAML refuses (``{a: n? ull}``: a ``?`` inside a plain scalar of a flow
mapping); those are read as libyaml reads them. 3,000 generated examples in three runs found no
other difference (``max_examples`` is lower here to keep the suite quick)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.source import loader
from controller.source.loader import load_documents

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(loader._CLOADER is None, reason="PyYAML built without libyaml")


def _both(text: str) -> tuple[Any, Any]:
    docs, problems = load_documents(text, "f.yaml")
    pure_docs, pure_problems = loader._load_pure(text, "f.yaml")
    ours = ([(d.data, d.start_line, d.index) for d in docs], problems)
    pure = ([(d.data, d.start_line, d.index) for d in pure_docs], pure_problems)
    return ours, pure


def test_the_example_manifests_are_read_by_libyaml_as_by_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted((ROOT / "manifests").rglob("*.yaml"))
    assert len(files) > 5
    for f in files:
        ours, pure = _both(f.read_text())
        assert ours == pure, f
    monkeypatch.setattr(loader, "_load_pure", lambda *_: pytest.fail("a valid manifest went to PyYAML"))
    docs, problems = load_documents(files[0].read_text(), "f.yaml")
    assert docs and not problems


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "a: [1, 2\n",  # unclosed flow sequence
        "<<: {a: 1}\n",  # merge key
        "a: !!int 0xZZ\n",  # a tag that does not convert
        "a: \x07\n",  # a character YAML does not allow
        "a: &x [*x]\n",  # recursive alias
        "k: v\n---\n- [\n",  # a bad second document after a good one
        "[" * 2000 + "]" * 2000,  # nesting past both parsers' limits
        "\ta: 1\n",  # a tab as indentation
        "n\tull: 1\n",  # a tab in a plain scalar: libyaml takes it, PyYAML does not
        'a: !!int ""\n',  # PyYAML's int constructor fails with IndexError on an empty value
    ],
)
def test_a_problem_is_reported_in_pyyamls_words(text: str) -> None:
    ours, pure = _both(text)
    assert ours == pure
    assert ours[1], "a problem was expected"


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    value=_values,
    flow=st.sampled_from([None, True, False]),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.sampled_from([
        "", ":", "- ", "\t", "[", "{", "&a ", "*a", "!!int ", "'", '"', "\n---\n", "#", "\r", "\u2028", "\x85",
        "%YAML 1.1\n", "!foo ", "? ", "|", ">", "\n...\n", "\ufeff", "\\", "@", "`", ",", "]", "}", "\n  ",
    ]),
)
def test_libyaml_and_pyyaml_agree_on_generated_and_damaged_text(value: Any, flow: bool | None, cut: int, junk: str) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    damaged = text[:cut] + junk + text[cut:]
    for t in (text, damaged):
        ours, pure = _both(t)
        if not pure[1] or ours[1]:  # else libyaml took a text PyYAML refuses (see the docstring)
            assert ours == pure, t
