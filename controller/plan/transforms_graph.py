"""Step 7 of compiling a release's SQL transforms (pure): the order of transforms.

A transform depends on its refs; refs between transforms of the release order them topologically
(``depends_on``), and a cycle is an error that names it. The plan's Transform actions are ordered the
same way (``order_transform_actions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.plan.actions import Action
from controller.plan.resources import ResourceKind


def topological_order(edges: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Nodes ordered dependencies first (deterministic: depth first, by name) and the cycles found
    (each as ``[a, b, a]``)."""
    nodes = sorted(edges)
    cycles: list[list[str]] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = dict.fromkeys(nodes, 0)
    order: list[str] = []
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(set(edges.get(n, ()))):
            if d not in state:
                continue
            if state[d] == 1:
                cycle = [*stack[stack.index(d) :], d]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    cycles.append(cycle)
            elif state[d] == 0:
                visit(d)
        stack.pop()
        state[n] = 2
        order.append(n)

    for n in nodes:
        if state[n] == 0:
            visit(n)
    return order, cycles


def order_transform_actions(actions: Sequence[Action]) -> list[Action]:
    """Keep ``actions`` as they are but move each Transform action after the Transform actions it
    depends on (``Action.depends_on`` holds upstream transform names); stable otherwise."""
    idx = [i for i, a in enumerate(actions) if a.kind is ResourceKind.TRANSFORM]
    if len(idx) < 2:
        return list(actions)
    group = [actions[i] for i in idx]
    names = {a.name for a in group}
    edges = {a.name: [d for d in a.depends_on if d in names] for a in group}
    order, _ = topological_order(edges)
    rank = {n: k for k, n in enumerate(order)}
    ordered = sorted(group, key=lambda a: rank[a.name])
    out = list(actions)
    for i, a in zip(idx, ordered, strict=True):
        out[i] = a
    return out
