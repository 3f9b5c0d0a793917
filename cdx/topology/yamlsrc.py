"""Parse YAML into plain Python data plus the line of every node (for error messages).

Plain scalars follow YAML 1.2 (``yes``/``no`` are strings); an integer written in a
non-canonical way (``0040``, ``0x1F``, ``1_000``) is kept as the string the user wrote, so
ids such as ``0040`` survive. Merge keys (``<<: *anchor``) are supported; duplicate keys,
custom tags and multiple documents are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cdx.topology.issues import Issue

YPath = tuple[str | int, ...]

_T = "tag:yaml.org,2002:"


@dataclass
class Parsed:
    """The parsed document: ``data`` (dicts, lists, scalars) and ``lines[path]`` (1-based)."""

    data: Any
    lines: dict[YPath, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def line_of(self, path: YPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return line
        return None


def format_path(path: YPath) -> str:
    """``("subjobs", 3, "fields", 2, "name")`` -> ``subjobs[3].fields[2].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def parse_yaml(text: str) -> Parsed:
    """Parse ``text``; syntax problems are returned as issues (``data`` is then ``None``)."""
    yaml = YAML(typ="safe", pure=True)
    try:
        docs = list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return Parsed(None, issues=[Issue("", line, f"YAML syntax error: {problem or exc}")])
    except YAMLError as exc:
        return Parsed(None, issues=[Issue("", None, f"YAML error: {exc}")])
    docs = [d for d in docs if d is not None]
    if not docs:
        return Parsed(None, issues=[Issue("", 1, "the file is empty; see docs/topology.md for the keys")])
    if len(docs) > 1:
        line = docs[1].start_mark.line + 1
        return Parsed(None, issues=[Issue("", line, "more than one YAML document ('---'); use one")])
    parsed = Parsed(None)
    parsed.data = _build(docs[0], (), parsed)
    return parsed


def _build(node: Node, path: YPath, parsed: Parsed) -> Any:
    parsed.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, ScalarNode):
        return _scalar(node, path, parsed)
    if isinstance(node, SequenceNode):
        return [_build(item, (*path, i), parsed) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        return _mapping(node, path, parsed)
    return None  # pragma: no cover - ruamel has no other node kinds


def _mapping(node: MappingNode, path: YPath, parsed: Parsed) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    merged: list[tuple[Any, Any]] = []
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == _T + "merge":
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, MappingNode):
                    parsed.issues.append(Issue(format_path(path), line, "'<<' must merge a mapping"))
                    continue
                merged.extend(_mapping(src, path, parsed).items())
            continue
        if not isinstance(key_node, ScalarNode):
            parsed.issues.append(Issue(format_path(path), line, "mapping keys must be plain names"))
            continue
        key = _scalar(key_node, path, parsed)
        if not isinstance(key, str | int) or isinstance(key, bool):
            key = str(key_node.value)
        if key in out:
            parsed.issues.append(
                Issue(format_path((*path, key)), line,
                      f"duplicate key {key!r} (first at line {parsed.lines[(*path, key)]})")
            )
            continue
        parsed.lines[(*path, key)] = line
        out[key] = _build(value_node, (*path, key), parsed)
    for key, value in merged:
        out.setdefault(key, value)
    return out


def _scalar(node: ScalarNode, path: YPath, parsed: Parsed) -> Any:
    tag, text = node.tag, node.value
    if tag == _T + "null":
        return None
    if tag == _T + "bool":
        return text.lower() == "true"
    if tag == _T + "int":
        try:
            value = int(text)
        except ValueError:
            return text
        return value if str(value) == text else text
    if tag == _T + "float":
        try:
            return float(text)
        except ValueError:
            return text
    if tag not in (_T + "str", _T + "timestamp", _T + "binary"):
        line = node.start_mark.line + 1
        parsed.issues.append(Issue(format_path(path), line, f"unsupported YAML tag {tag!r}"))
    return text
