"""The metastore's notification log as the snapshot's watch (``hive_metastore.NotificationCursor``,
``HiveScopes.changed_scopes``) without a server: it starts only where the metastore writes the log,
names the databases events touched, and says "cannot tell" on a gap, a database-less event or too
many events; a failed read leaves its place in the log. The live check is
``tests/integration/test_batched_observe.py``."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.hive import HiveAdapter
from controller.adapters.hive_metastore import LISTENER_KEYS, NotificationCursor

LISTENER = "org.apache.hive.hcatalog.listener.DbNotificationListener"


class FakeLog:
    """The three metastore calls the cursor makes, over an in-memory log."""

    def __init__(self, listeners: dict[str, str] | None = None) -> None:
        self.listeners = listeners if listeners is not None else {LISTENER_KEYS[0]: LISTENER}
        self.events: list[tuple[int, str, str | None]] = []
        self.calls: list[str] = []
        self.fail = False

    def add(self, event_type: str, db: str | None) -> None:
        self.events.append((len(self.events) + 1, event_type, db))

    def config_value(self, key: str) -> str:
        self.calls.append("get_config_value")
        return self.listeners.get(key, "")

    def current_event_id(self) -> int:
        self.calls.append("get_current_notificationEventId")
        return self.events[-1][0] if self.events else 0

    def events_after(self, last: int, limit: int) -> list[tuple[int, str, str | None]]:
        self.calls.append("get_next_notification")
        if self.fail:
            raise OSError("metastore down")
        return [e for e in self.events if e[0] > last][:limit]


def _cursor(log: FakeLog, page: int = 1000, pages: int = 10) -> NotificationCursor:
    return NotificationCursor(log, page=page, pages=pages)  # type: ignore[arg-type]


def test_the_watch_starts_then_names_the_databases_events_touched() -> None:
    log = FakeLog()
    log.add("CREATE_TABLE", "old")  # before the watch: not reported
    cur = _cursor(log)
    assert cur.changed() == (set(), False)
    assert log.calls == ["get_config_value", "get_current_notificationEventId"]  # the first key names it
    log.calls.clear()
    assert cur.changed() == (set(), False)
    log.add("ALTER_TABLE", "Web")
    log.add("CREATE_DATABASE", "fresh")
    log.add("ADD_PARTITION", "web")
    assert cur.changed() == ({"web", "fresh"}, True)
    assert cur.changed() == (set(), False)
    assert log.calls == ["get_next_notification"] * 3  # one call per look


def test_no_listener_means_it_cannot_tell_and_stops_asking() -> None:
    log = FakeLog(listeners={})
    cur = _cursor(log)
    assert cur.changed() is None
    assert cur.changed() is None
    assert log.calls == ["get_config_value", "get_config_value"]


def test_a_gap_or_an_event_without_a_database_cannot_tell() -> None:
    log = FakeLog()
    cur = _cursor(log)
    cur.changed()
    log.add("ALTER_TABLE", "a")
    log.events.append((5, "ALTER_TABLE", "b"))  # 2..4 deleted by the log's cleaner before read
    assert cur.changed() is None
    assert cur.changed() == (set(), False)  # from there on it can tell again
    log.events.append((6, "CREATE_FUNCTION", None))
    assert cur.changed() is None


def test_more_than_its_pages_cannot_tell_and_pages_are_followed() -> None:
    log = FakeLog()
    cur = _cursor(log, page=2, pages=2)
    cur.changed()
    for db in ("a", "b", "c"):
        log.add("ALTER_TABLE", db)
    assert cur.changed() == ({"a", "b", "c"}, False)  # two pages
    for i in range(5):
        log.add("ALTER_TABLE", f"d{i}")
    assert cur.changed() is None
    assert cur.last == 7  # read up to where it stopped; the rest comes next time
    assert cur.changed() == ({"d4"}, False)


def test_a_failed_read_leaves_the_place_in_the_log() -> None:
    log = FakeLog()
    cur = _cursor(log)
    cur.changed()
    log.add("ALTER_TABLE", "a")
    log.fail = True
    with pytest.raises(OSError):
        cur.changed()
    log.fail = False
    assert cur.changed() == ({"a"}, False)


def test_the_adapter_maps_databases_to_its_scopes_and_the_sql_path_cannot_tell() -> None:
    sql = HiveAdapter("127.0.0.1", 1)
    assert sql.changed_scopes() is None
    hms = HiveAdapter("127.0.0.1", 1, metastore_uri="thrift://127.0.0.1:1")
    log = FakeLog()
    hms.events = _cursor(log)
    assert hms.changed_scopes() == set()
    log.add("ALTER_TABLE", "web")
    log.add("DROP_DATABASE", "gone")
    got: Any = hms.changed_scopes()
    assert got == {"db:web", "db:gone", "databases"}
