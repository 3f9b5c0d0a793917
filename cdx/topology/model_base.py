"""The base of every topology model (:class:`Model`: frozen, strict, hashable by value) and its enums."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ChannelType", "Direction", "Model", "stringify"]


def _freeze(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return tuple(_freeze(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


class Model(BaseModel):
    """Base of every topology model: frozen, unknown keys rejected, hashable by value."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    def __hash__(self) -> int:
        return hash((type(self).__name__, _freeze(self)))


class Direction(StrEnum):
    """Which way data flows: ``download`` (HQ -> channels) or ``upload`` (channels -> HQ)."""

    DOWNLOAD = "download"
    UPLOAD = "upload"


class ChannelType(StrEnum):
    """The kind of channel; informational (routing does not depend on it)."""

    STORE = "store"
    ONLINE = "online"
    CALL_CENTER = "call_center"


def stringify(value: Any) -> Any:
    """YAML scalars as strings (``true``/``false``, numbers as written): settings passed through verbatim."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value
