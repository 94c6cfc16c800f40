"""The base of every manifest model (``controller.model.manifest``, ``controller.model.endpoints``):
camelCase aliases, unknown fields forbidden, immutable."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from controller.model import identifiers as ids
from controller.model.frozen import Frozen

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'10s' → 10.0 seconds; accepts ms, s, m, h."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", text)
    if not m:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 500ms, 10s, 5m, 1h")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


class Spec(Frozen):
    """Base for every manifest model: camelCase aliases, unknown fields forbidden, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def string_values(v: Any) -> Any:
    """YAML gives numbers and booleans for unquoted values; Kafka configs and Spark conf are strings."""
    if isinstance(v, dict):
        return {k: (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in v.items()}
    return v


def _checked_keys(check: Callable[[str], object]) -> Callable[[dict[str, str]], dict[str, str]]:
    def run(v: dict[str, str]) -> dict[str, str]:
        for k in v:
            try:
                check(k)
            except ids.IdentifierError as e:
                raise ValueError(str(e)) from None
        return v

    return run


# A Spark conf map (a job's, the Environment's, a stage override's) and a Kafka topic config map (a
# stage override's): values as strings, keys checked.
SparkConf = Annotated[
    dict[str, str], BeforeValidator(string_values), AfterValidator(_checked_keys(ids.check_spark_conf_key))
]


def _resource_name(v: str) -> str:
    try:
        return ids.check_resource_name(v)
    except ids.IdentifierError as e:
        raise ValueError(str(e)) from None


# A DNS-label style name (a metric, an analysis template, a namespace, a service account).
ResourceName = Annotated[str, AfterValidator(_resource_name)]
KafkaConfig = Annotated[
    dict[str, str], BeforeValidator(string_values), AfterValidator(_checked_keys(ids.check_kafka_config_key))
]
