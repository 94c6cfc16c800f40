"""Frozen models share their set of given field names (``controller.model.frozen``), and no
operation on one instance changes what another reports as set."""

from __future__ import annotations

import copy
import pickle

import pytest
from pydantic import ValidationError

from controller.model.frozen import Frozen
from controller.model.manifest import TopicSpec
from controller.plan.resources import Column, TopicResource


def _topics() -> tuple[TopicResource, TopicResource]:
    return (TopicResource(name="a", partitions=1, replication_factor=1),
            TopicResource(name="b", partitions=2, replication_factor=1))


def test_instances_given_the_same_fields_share_one_set() -> None:
    a, b = _topics()
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.model_fields_set == {"name", "partitions", "replication_factor"}
    other = TopicResource(name="c", partitions=1, replication_factor=1, config={"x": "1"})
    assert other.model_fields_set == {"name", "partitions", "replication_factor", "config"}
    assert a.model_fields_set == {"name", "partitions", "replication_factor"}
    assert Column(name="x", type="int").__pydantic_fields_set__ is Column(name="y", type="int").__pydantic_fields_set__
    assert issubclass(TopicSpec, Frozen)  # every manifest model too


def test_copies_updates_and_refused_assignments_leave_the_shared_set_alone() -> None:
    a, b = _topics()
    c = a.model_copy(update={"config": {"retention.ms": "1"}})
    assert c.model_fields_set == {"name", "partitions", "replication_factor", "config"}
    d = copy.deepcopy(a)
    e = pickle.loads(pickle.dumps(a))
    with pytest.raises(ValidationError):
        a.name = "z"  # type: ignore[misc]
    for m in (a, b, d, e):
        assert m.model_fields_set == {"name", "partitions", "replication_factor"}
    assert a.model_dump(exclude_unset=True) == {"name": "a", "partitions": 1, "replication_factor": 1}
    assert a == e and a != b
