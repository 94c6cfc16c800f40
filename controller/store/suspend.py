"""Suspended releases (``pipectl suspend``/``resume``): one key per release in the store's kv table.

A suspended release is skipped by the controller's passes (``Reconciler.reconcile`` looks first):
nothing is planned, applied, gated, promoted or rolled back for it, and its Ready condition is
False with reason ``Suspended`` until it is resumed. What already runs keeps running.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from controller.store.db import Store

PREFIX = "suspend/"


def suspension(store: Store, release: str) -> dict[str, Any] | None:
    """``{"by": principal, "at": ISO time, "reason": text}`` while suspended, else None."""
    raw = store.kv_get(PREFIX + release)
    if not raw:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) and data.get("suspended") else None


def set_suspended(store: Store, release: str, suspended: bool, by: str, reason: str = "") -> bool:
    """Suspend or resume ``release``; False when it already was in that state."""
    if (suspension(store, release) is not None) == suspended:
        return False
    record = {"suspended": suspended, "by": by, "at": datetime.now(UTC).isoformat(), "reason": reason}
    store.kv_put(PREFIX + release, json.dumps(record, sort_keys=True))
    return True


def suspended_releases(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for key, raw in store.kv_prefix(PREFIX).items():
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("suspended"):
            out[key.removeprefix(PREFIX)] = data
    return out


def message(record: dict[str, Any], release: str) -> str:
    why = f": {record['reason']}" if record.get("reason") else ""
    return (
        f"suspended by {record.get('by', '?')} at {record.get('at', '?')}{why}; "
        f"the controller skips this release until `pipectl resume {release}`"
    )
