"""Step 6 of compiling a release's SQL transforms (pure): declared contracts against the compiled
output.

A contract declares a transform's output columns and their types. A break names the transform whose
contract breaks and the upstream column the broken column now comes from, and is recorded on that
transform and on every upstream transform of the release it comes from, so the plan refuses both
(``Reason.CONTRACT_BROKEN`` in ``controller.plan.rules.transform``). A broken contract is not a
problem of the manifest: the plan refuses it.
"""

from __future__ import annotations

from dataclasses import replace

from controller.plan.transforms_model import UNKNOWN_TYPE, CompiledTransform


def attribute_breaks(compiled: list[CompiledTransform]) -> list[CompiledTransform]:
    """Record each contract break on the broken transform and on the upstream transforms of the
    release its broken columns come from (so the plan refuses the cause too)."""
    by_physical = {c.name: c for c in compiled}
    breaks: dict[str, list[str]] = {c.name: [] for c in compiled}
    for ct in compiled:
        for message, rels in contract_breaks(ct):
            breaks[ct.name].append(f"contract of {ct.spec.name} broken: {message}")
            for rel in sorted(rels):
                up = by_physical.get(rel)
                if up is not None and up.name != ct.name:
                    breaks[up.name].append(
                        f"{up.spec.name} breaks the declared contract of downstream {ct.spec.name}: {message}"
                    )
    return [_with_breaks(c, breaks[c.name]) for c in compiled]


def _with_breaks(ct: CompiledTransform, breaks: list[str]) -> CompiledTransform:
    if not breaks:
        return ct
    return replace(ct, contract_breaks=tuple(dict.fromkeys(breaks)))


def contract_breaks(ct: CompiledTransform) -> list[tuple[str, set[str]]]:
    """(message, upstream physical relations it comes from) for each break of ``ct``'s contract."""
    if ct.spec.columns is None:
        return []
    logical = ct.spec.name
    declared = {c.name: c.type for c in ct.spec.columns}
    got = {c.name: c.type for c in ct.columns}
    out: list[tuple[str, set[str]]] = []
    if not ct.columns_known:
        return out  # SELECT * over an input of unknown schema: checked by the engine when built
    by_physical = {r.physical: r.logical for r in ct.inputs}

    def origin(col: str) -> tuple[str, set[str]]:
        srcs = ct.lineage.get(col, ())
        if not srcs:
            return "", set()
        shown = ", ".join(f"{by_physical.get(rel, rel)}.{c}" for rel, c in srcs)
        return f" (computed from upstream {shown})", {rel for rel, _ in srcs}

    for name, typ in declared.items():
        if name not in got:
            out.append(
                (
                    f"column {name} is declared in the contract of {logical} but the SQL does not produce it",
                    set(),
                )
            )
        elif got[name] != UNKNOWN_TYPE and got[name] != typ:
            where, rels = origin(name)
            out.append(
                (
                    f"column {name} is declared {typ} in the contract of {logical} but the compiled SQL "
                    f"yields {got[name]}{where}",
                    rels,
                )
            )
    for name in got:
        if name not in declared:
            where, rels = origin(name)
            out.append(
                (f"column {name} is produced by {logical} but not declared in its contract{where}", rels)
            )
    return out
