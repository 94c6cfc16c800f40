"""One DNS-label name type (``controller.model.base.ResourceName``) for every model field that names
a resource: the same message, at the field's path, from each model that uses it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.model.analysis import AnalysisTemplate
from controller.model.analysis_providers import ProviderMetric


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (ProviderMetric, {"name": "Bad_Name", "prometheus": {"query": "up"}}, "name"),
        (AnalysisTemplate, {"name": "Bad_Name"}, "name"),
    ],
)
def test_a_bad_name_is_refused_at_its_field(model: Any, data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errors = [e for e in info.value.errors() if e["loc"] == (field,)]
    assert errors, info.value.errors()
    assert "invalid name 'Bad_Name': lower-case letters, digits and '-'" in errors[0]["msg"]


def test_a_good_name_is_kept() -> None:
    assert ProviderMetric.model_validate({"name": "p99-latency", "prometheus": {"query": "up"}}).name == "p99-latency"
