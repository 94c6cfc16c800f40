"""The metastore's notification log as the snapshot's watch (``hive_metastore.NotificationCursor``,
``HiveScopes.changed_scopes``) without a server: it starts only where the metastore writes the log,
names the databases events touched, finds an event that committed late under an id already read
(HMS 2.3 hands out duplicate ids), and says "cannot tell" when events it had to re-read were
deleted, for a database-less event or too many events; a failed read leaves its place in the log.
The live check is ``tests/integration/test_batched_observe.py``."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.hive import HiveAdapter
from controller.adapters.hive_metastore import LISTENER_KEYS, LogEvent, NotificationCursor

LISTENER = "org.apache.hive.hcatalog.listener.DbNotificationListener"


class FakeLog:
    """The three metastore calls the cursor makes, over an in-memory log."""

    def __init__(self, listeners: dict[str, str] | None = None) -> None:
        self.listeners = listeners if listeners is not None else {LISTENER_KEYS[0]: LISTENER}
        self.events: list[LogEvent] = []
        self.calls: list[str] = []
        self.fail = False

    def add(self, event_type: str, db: str | None, event_id: int | None = None) -> None:
        new_id = event_id if event_id is not None else (self.events[-1].id + 1 if self.events else 1)
        self.events.append(LogEvent(new_id, event_type, db, f"m{len(self.events)}"))
        self.events.sort(key=lambda e: e.id)

    def config_value(self, key: str) -> str:
        self.calls.append("get_config_value")
        return self.listeners.get(key, "")

    def current_event_id(self) -> int:
        self.calls.append("get_current_notificationEventId")
        return self.events[-1].id if self.events else 0

    def events_after(self, last: int, limit: int) -> list[LogEvent]:
        self.calls.append("get_next_notification")
        if self.fail:
            raise OSError("metastore down")
        return [e for e in self.events if e.id > last][:limit]


def _cursor(log: FakeLog, page: int = 1000, pages: int = 10, overlap: int = 100) -> NotificationCursor:
    return NotificationCursor(log, page=page, pages=pages, overlap=overlap)  # type: ignore[arg-type]


def test_the_watch_starts_then_names_the_databases_events_touched() -> None:
    log = FakeLog()
    cur = _cursor(log, overlap=2)
    for db in ("old1", "old2", "old3"):
        log.add("CREATE_TABLE", db)  # before the watch
    assert cur.changed() == (set(), False)
    assert log.calls == ["get_config_value", "get_current_notificationEventId"]  # the first key names it
    log.calls.clear()
    assert cur.changed() == ({"old2", "old3"}, False)  # the overlap's first look re-reads 2 ids: harmless
    assert cur.changed() == (set(), False)
    log.add("ALTER_TABLE", "Web")
    log.add("CREATE_DATABASE", "fresh")
    log.add("ADD_PARTITION", "web")
    assert cur.changed() == ({"web", "fresh"}, True)
    assert cur.changed() == (set(), False)
    assert log.calls == ["get_next_notification"] * 4  # one call per look


def test_an_event_committed_late_under_an_id_already_read_is_found() -> None:
    log = FakeLog()
    cur = _cursor(log, overlap=5)
    cur.changed()
    log.add("ALTER_TABLE", "a")  # id 1
    log.add("ALTER_TABLE", "b")  # id 2
    assert cur.changed() == ({"a", "b"}, False)
    log.add("CREATE_TABLE", "late", event_id=1)  # a concurrent change that got id 1 too
    assert cur.changed() == ({"late"}, False)
    assert cur.changed() == (set(), False)


def test_no_listener_means_it_cannot_tell_and_stops_asking() -> None:
    log = FakeLog(listeners={})
    cur = _cursor(log)
    assert cur.changed() is None
    assert cur.changed() is None
    assert log.calls == ["get_config_value", "get_config_value"]


def test_deleted_events_or_an_event_without_a_database_cannot_tell() -> None:
    log = FakeLog()
    cur = _cursor(log, overlap=2)
    for db in "abcdef":
        log.add("ALTER_TABLE", db)
    cur.changed()  # starts at 6
    log.add("ALTER_TABLE", "g")
    assert cur.changed() == ({"e", "f", "g"}, False)
    del log.events[:5]  # the log's cleaner deleted 1..5: already read, nothing is lost
    assert cur.changed() == (set(), False)
    log.add("ALTER_TABLE", "x", event_id=9)
    del log.events[:-1]  # 7 and 8 deleted before the controller read 8
    assert cur.changed() is None
    log.add("ALTER_TABLE", "h")
    assert cur.changed() == ({"h"}, False)  # from there on it can tell again
    log.add("CREATE_FUNCTION", None)
    assert cur.changed() is None


def test_more_than_its_pages_cannot_tell_and_pages_are_followed() -> None:
    log = FakeLog()
    cur = _cursor(log, page=3, pages=3, overlap=1)
    cur.changed()
    for db in ("a", "b", "c"):
        log.add("ALTER_TABLE", db)
    assert cur.changed() == ({"a", "b", "c"}, False)  # two pages: they overlap by one id
    for i in range(8):
        log.add("ALTER_TABLE", f"d{i}")
    assert cur.changed() is None
    assert cur.changed() == ({"d6", "d7"}, False)  # what the last look did not reach


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
