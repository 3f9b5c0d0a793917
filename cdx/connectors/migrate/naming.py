"""Small naming helpers shared by the rules and the grants."""

from __future__ import annotations


def display(schema: str | None, name: str) -> str:
    """``schema.name`` as users write it (for messages)."""
    return f"{schema}.{name}" if schema else name
