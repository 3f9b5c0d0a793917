"""Model -> YAML: write a :class:`~cdx.topology.root.Topology` back as ``topology.yaml`` text.

The output is minimal (defaults and empty values are left out; fields without ``to_name``
are written as bare names; short lists and small mappings in flow style) and loads back to
an equal model: ``${`` in values is escaped as ``$${`` so that no value is taken for an
environment reference. Values are written as resolved: a loaded topology's secrets appear
in clear text.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from cdx.topology.env import escape
from cdx.topology.root import Topology

_FLOW_MAP_MAX = 4
_FLOW_SEQ_MAX = 80
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.()/+ -]*(?<! )$")


def _compact(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        if set(value) == {"name"} and key == "fields":
            return value["name"]
        return {k: _compact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v, key) for v in value]
    if isinstance(value, str):
        return escape(value)
    return value


def topology_to_data(topo: Topology) -> dict[str, Any]:
    """Plain data (dicts, lists, str, int, bool) equivalent to ``topo``, defaults omitted."""
    data = topo.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    data.pop("version", None)
    result: dict[str, Any] = _compact({"version": 1, **data})
    return result


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def styled(value: Any) -> Any:
    """ruamel containers for plain data: scalar lists and small scalar mappings in flow style."""
    if isinstance(value, dict):
        cmap = CommentedMap((k, styled(v)) for k, v in value.items())
        if value and len(value) <= _FLOW_MAP_MAX and all(_is_scalar(v) for v in value.values()):
            cmap.fa.set_flow_style()
        return cmap
    if isinstance(value, list):
        seq = CommentedSeq(styled(v) for v in value)
        if value and all(_is_scalar(v) for v in value) and sum(len(str(v)) + 2 for v in value) <= _FLOW_SEQ_MAX:
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and not _PLAIN_SAFE.match(value):
        return DoubleQuotedScalarString(value)  # ruamel mis-quotes some plain scalars in flow context
    return value


def new_yaml() -> YAML:
    """A round-trip YAML instance configured like the sample ``topology.yaml``."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def data_to_yaml(data: Any) -> str:
    """YAML text for plain data (keys in insertion order), styled by :func:`styled`."""
    buf = io.StringIO()
    new_yaml().dump(styled(data), buf)
    return buf.getvalue()


def dump_topology(topo: Topology) -> str:
    """``topo`` as YAML text that :func:`~cdx.topology.loader.parse_topology` reads back equal."""
    return data_to_yaml(topology_to_data(topo))
