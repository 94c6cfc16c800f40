"""``load_documents``: a document's line table is read again from its stream only when asked."""

from __future__ import annotations

from controller.source.loader import load_documents

STREAM = """\
kind: A
spec:
  items:
    - name: x
---
# the second document
kind: B
spec:
  owner: team
  items:
    - name: y
      size: 3
"""


def test_lines_are_read_again_only_when_asked_and_match_the_document() -> None:
    docs, problems = load_documents(STREAM, "f.yaml")
    assert problems == [] and [d.data["kind"] for d in docs] == ["A", "B"]
    assert all(d._lines is None for d in docs)  # a valid document keeps no line table
    second = docs[1]
    assert second.start_line == 7
    assert second.line_of(("spec", "owner")) == 9
    assert second.line_of(("spec", "items", 0, "size")) == 12
    assert second.line_of(("spec", "items", 0, "nope")) == 11  # nearest ancestor
    assert docs[0].line_of(("spec", "items", 0, "name")) == 4
    assert docs[0]._lines is not None and docs[0].lines[("kind",)] == 1


def test_duplicate_key_names_the_first_line() -> None:
    _, problems = load_documents("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")
    assert [(p.line, p.message) for p in problems] == [(4, "duplicate key 'c' (first on line 3)")]
