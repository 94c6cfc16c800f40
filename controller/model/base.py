"""The base of every manifest model (``controller.model.manifest``, ``controller.model.endpoints``):
camelCase aliases, unknown fields forbidden, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Spec(BaseModel):
    """Base for every manifest model: camelCase aliases, unknown fields forbidden, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)
