"""Releases whose manifest left the git source: said in their status, not silently kept Ready.

With ``--source git`` a release removed from the repository is no longer reconciled: the
controller drops it from its queue, and what it deployed at each stage keeps running (git mode
prunes nothing a manifest no longer names; with ``--source kubernetes`` deleting the object runs
its finalizer, ``controller.engine.kube_finalizer``). Its stored status used to stay as the last
pass left it, so ``pipectl get`` went on showing it Ready. ``mark`` sets its Ready condition to
False with reason ``NotInSource``, naming the commit; when its manifest comes back, the next pass
writes Ready again. Written once per release (a status already marked is not rewritten).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from controller.model.reasons import Reason
from controller.model.status import Condition, ReleaseStatus, set_condition
from controller.store.db import Store


def message(commit: str | None) -> str:
    at = f"commit {commit[:12]}" if commit else "the source's current revision"
    return (
        f"no manifest declares this release at {at}: it is not reconciled any more; what it deployed "
        "at each stage is left as it is (git mode prunes nothing). Commit its manifest again to resume"
    )


def marked(status: dict[str, Any], commit: str | None, now: datetime) -> dict[str, Any] | None:
    """``status`` with Ready=False NotInSource, or None when it already says so for ``commit``."""
    st = ReleaseStatus.model_validate(status)
    ready = next((c for c in st.conditions if c.type == "Ready"), None)
    text = message(commit)
    if ready is not None and ready.reason == Reason.NOT_IN_SOURCE and ready.message == text:
        return None
    cond = Condition(type="Ready", status="False", reason=Reason.NOT_IN_SOURCE, message=text,
                     last_transition_time=now)
    st.conditions = set_condition(st.conditions, cond)
    return st.model_dump(mode="json", by_alias=True)


def mark(store: Store, declared: Iterable[str], commit: str | None, now: Callable[[], datetime]) -> list[str]:
    """Mark every stored release that ``declared`` (the source's releases) does not name; returns
    the names written."""
    names = set(declared)
    written = []
    for name in store.release_names():  # only the undeclared ones' statuses are read and parsed
        if name in names or (status := store.get_status(name)) is None:
            continue
        new = marked(status, commit, now())
        if new is not None:
            store.put_status(name, new)
            written.append(name)
    return written
