"""Frozen pydantic models that share their ``__pydantic_fields_set__`` (issue #17).

pydantic keeps, per instance, the set of the field names given at construction (a ``set`` of
216 bytes, 728 once it holds five names). At 1,000 releases the controller holds ~60k frozen
models between passes (parsed manifests, live and desired resources) and their sets were 22 MiB
of its heap, while only a few dozen distinct sets exist. A frozen model's set never changes after
construction: pydantic refuses assignment before touching it, and ``model_copy`` and ``copy``
give the copy a set of its own before updating it (``tests/unit/model/test_frozen.py``). So
``Frozen`` instances with the same names share one set.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

_SHARED: dict[frozenset[str], set[str]] = {}
_SHARED_MAX = 10_000  # distinct name sets remembered; past it an instance keeps its own


class Frozen(BaseModel):
    """An immutable model whose set of given field names is shared with its equals."""

    model_config = ConfigDict(frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        names = self.__pydantic_fields_set__
        key = frozenset(names)
        shared = _SHARED.get(key)
        if shared is None:
            if len(_SHARED) >= _SHARED_MAX:
                return
            shared = _SHARED.setdefault(key, set(key))
        object.__setattr__(self, "__pydantic_fields_set__", shared)
