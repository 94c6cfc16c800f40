"""``pipectl describe release``: conditions, stages, gates, last plans and events as text."""

from __future__ import annotations

from typing import Any

from controller.cli.render import age, plain_table


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def describe_text(
    name: str, status: dict[str, Any], events: list[dict[str, Any]], last_plans: dict[str, Any]
) -> str:
    return "\n".join(
        _head(name, status) + _stages(status) + _gates(status) + _plans(last_plans) + _events(events)
    )


def _head(name: str, status: dict[str, Any]) -> list[str]:
    out: list[str] = []
    out += [
        f"Name:           {name}",
        f"Version:        {status.get('version')}",
        f"Current stage:  {status.get('currentStage')}",
        f"Phase:          {status.get('phase')}",
        f"Git commit:     {status.get('observedCommit')}",
        "",
        "Conditions:",
    ]
    conds = status.get("conditions") or []
    out.append(
        _indent(
            plain_table(
                ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
                [
                    [
                        c["type"],
                        c["status"],
                        c["reason"],
                        age(c.get("lastTransitionTime")),
                        c.get("message", "")[:160],
                    ]
                    for c in conds
                ],
            )
        )
    )
    return out


def _stages(status: dict[str, Any]) -> list[str]:
    out: list[str] = []
    out += ["", "Stages:"]
    out.append(
        _indent(
            plain_table(
                ["STAGE", "VERSION", "PHASE", "REASON", "AGE", "MESSAGE"],
                [
                    [
                        st,
                        x.get("version") or "-",
                        x.get("phase"),
                        x.get("reason") or "-",
                        age(x.get("lastTransitionTime")),
                        (x.get("message") or "")[:160],
                    ]
                    for st, x in status.get("stages", {}).items()
                ],
            )
        )
    )
    return out


def _gates(status: dict[str, Any]) -> list[str]:
    out: list[str] = []
    out += ["", "Gates:"]
    rows = []
    for st, x in status.get("stages", {}).items():
        for g in x.get("gates") or []:
            rows.append([st, g["name"], g.get("type") or "-", g["verdict"], (g.get("message") or "")[:160]])
    out.append(
        _indent(plain_table(["STAGE", "GATE", "TYPE", "VERDICT", "MESSAGE"], rows)) if rows else "  <none>"
    )
    return out


def _plans(last_plans: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if last_plans:
        out += ["", "Last plan:"]
        for st, p in last_plans.items():
            acts = p.get("actions") or []
            out.append(f"  {st}: " + ("no changes" if not acts else f"{len(acts)} action(s)"))
            for a in acts:
                out.append(f"    {a['op']} {a['kind']} {a['name']} ({a.get('reason', '')})")
    return out


def _events(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    out += ["", "Events:"]
    out.append(
        _indent(
            plain_table(
                ["AGE", "TYPE", "STAGE", "REASON", "MESSAGE"],
                [
                    [
                        age(e["ts"]),
                        e["type"],
                        e.get("stage") or "-",
                        e["reason"],
                        (e.get("message") or "")[:200],
                    ]
                    for e in events
                ],
            )
        )
        if events
        else "  <none>"
    )
    return out
