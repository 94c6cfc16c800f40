"""How the Kafka adapter's config reads are built (``controller.adapters.kafka``): lean, shared
entries in place of the SDK's ``ConfigEntry`` (the adapter has the SDK build these while it reads;
this module does not import the SDK)."""

from __future__ import annotations


class LiveEntry:
    """A described config entry as this module reads it: name and value. The SDK's ``ConfigEntry``
    sets nine attributes in a Python ``__init__``, and building ~180k of them (5,000 topics)
    was most of a no-op pass's Kafka read at 1,000 releases: 3.6-4.2 CPU-s with it, 1.7-2.3 with
    this class, same topics, one run each (docs/benchmarks.md, issue #17).

    Entries are shared: most of a topic's 36 entries are broker defaults, the same for every topic,
    so one object per distinct name and value is built (``_SHARED``) instead of one per entry
    (~180k at 5,000 topics, ~18 MiB more at the read's peak)."""

    __slots__ = ("name", "value")
    name: str
    value: str | None

    def __new__(cls, name: str, value: str | None, *_args: object, **_kwargs: object) -> LiveEntry:
        key = (name, value)
        entry = _SHARED.get(key)
        if entry is None:
            if len(_SHARED) >= _SHARED_MAX:  # per-topic values (retention.ms...) do not pile up
                _SHARED.clear()
            entry = object.__new__(cls)
            entry.name, entry.value = name, value
            _SHARED[key] = entry
        return entry

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        pass  # built (or found) by __new__


_SHARED: dict[tuple[str, str | None], LiveEntry] = {}
_SHARED_MAX = 20_000
