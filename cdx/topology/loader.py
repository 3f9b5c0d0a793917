"""Load ``topology.yaml``: parse, resolve ``${VAR}`` references, validate, report every problem.

>>> topo = load_topology("topology.yaml")      # doctest: +SKIP

Any problem raises :class:`~cdx.topology.issues.TopologyError` listing all of them as
``topology.yaml:12: subjobs[3].fields[2].name: <what is wrong and how to fix it>``; a file
that cannot be read raises :class:`~cdx.errors.ConfigError`. Nothing here ever lets a
pydantic or YAML exception escape.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cdx.errors import ConfigError
from cdx.topology import model as m
from cdx.topology.env import resolve_tree
from cdx.topology.issues import Issue, TopologyError
from cdx.topology.principals import PRINCIPAL_ENV, identity_of
from cdx.topology.root import Topology
from cdx.topology.validate import PLACEHOLDER, Parts, check_parts, check_topology
from cdx.topology.yamlsrc import Parsed, YPath, format_path, parse_yaml

ENV_TOPOLOGY = "CDX_TOPOLOGY"
"""Environment variable naming the topology file used when none is given."""

_TOP_KEYS = list(Topology.model_fields)


def default_topology_path() -> Path:
    """``$CDX_TOPOLOGY`` if set, else ``topology.yaml`` in the current directory."""
    return Path(os.environ.get(ENV_TOPOLOGY) or "topology.yaml")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 topology file, turning every OS/decoding failure into a :class:`ConfigError`."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"topology file {str(p)!r} not found; pass the file or set ${ENV_TOPOLOGY}") from None
    except IsADirectoryError:
        raise ConfigError(f"topology file {str(p)!r} is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"topology file {str(p)!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read topology file {str(p)!r}: {exc.strerror or exc}") from None


def load_topology(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> Topology:
    """Load and validate a topology file (default: :func:`default_topology_path`)."""
    p = Path(path) if path is not None else default_topology_path()
    return load_topology_text(read_text(p), str(p), environ=environ)


def load_topology_text(text: str, source: str, *, environ: Mapping[str, str] | None = None) -> Topology:
    """Like :func:`load_topology` for a text already read (a published revision); ``source`` names it."""
    from cdx.kafka.admin import set_topic_management

    env = os.environ if environ is None else environ
    topo = parse_topology(text, source=source, environ=environ)
    set_topic_management(topo.kafka.manage_topics)  # every role loads its topology here
    return _as_principal(topo, env.get(PRINCIPAL_ENV), Path(source))


def _as_principal(topo: Topology, who: str | None, path: Path) -> Topology:
    """With ``$CDX_KAFKA_PRINCIPAL`` set (a role or a channel/register id), the topology whose
    ``kafka.security`` logs in as that identity of ``kafka.principals`` (one process, one identity)."""
    if not who:
        return topo
    try:
        identity = identity_of(topo.kafka.principals, who)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    kafka = topo.kafka.model_copy(update={"security": {**topo.kafka.security, **identity.sasl_settings()}})
    return topo.model_copy(update={"kafka": kafka})


def parse_topology(text: str, source: str = "topology.yaml", *,
                   environ: Mapping[str, str] | None = None) -> Topology:
    """Validate topology YAML ``text``; ``source`` names it in messages."""
    parsed = parse_yaml(text)
    issues = list(parsed.issues)
    if parsed.data is None and not issues:
        issues.append(Issue("", 1, "the file is empty"))
    if issues and parsed.data is None:
        raise TopologyError(issues, source)
    if not isinstance(parsed.data, dict):
        raise TopologyError([Issue("", 1, f"the top level must be a mapping with keys {', '.join(_TOP_KEYS)}")],
                            source)
    data, env_errors = resolve_tree(parsed.data, os.environ if environ is None else environ)
    env_issues = [Issue(format_path(path), parsed.line_of(path), msg) for path, msg in env_errors]
    issues += env_issues
    topo: Topology | None = None
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_validation(exc, parsed)
        issues += _locate_all(check_parts(_partial(data)), parsed)
    else:
        issues += _locate_all(check_topology(topo), parsed)
    if issues or topo is None:
        raise TopologyError(_without_follow_ons(issues, env_issues), source)
    return topo


def validate_topology(data: Mapping[str, Any]) -> Topology:
    """A :class:`Topology` from already-parsed data (a mapping), with every check the loader runs
    (field shapes, then cross references); raises :class:`TopologyError` listing the issues."""
    topo = Topology.model_validate(data)
    issues = check_topology(topo)
    if issues:
        raise TopologyError(issues)
    return topo


def _without_follow_ons(issues: list[Issue], env_issues: list[Issue]) -> list[Issue]:
    """Drop the validation issues of values whose ``${VAR}`` could not be resolved: the missing
    variable is the one problem there (``'${X}' is not a list of host:port`` would only repeat it)."""
    unresolved = {i.path for i in env_issues}
    return [i for i in issues if i.path not in unresolved or i in env_issues]


# -- locating issues ---------------------------------------------------------------------------
def _locate_all(issues: list[Issue], parsed: Parsed) -> list[Issue]:
    return [i if i.line is not None else i.located(line=parsed.line_of(parse_path(i.path))) for i in issues]


_TOKEN_RE = re.compile(r"\[(\d+)\]|\[(['\"])(.*?)\2\]|\.?([^.\[]+)")


def parse_path(text: str) -> YPath:
    """Inverse of :func:`~cdx.topology.yamlsrc.format_path`."""
    out: list[str | int] = []
    for index, _quote, quoted, plain in _TOKEN_RE.findall(text):
        out.append(int(index) if index else (quoted or plain))
    return tuple(out)


def _walk(loc: tuple[Any, ...], data: Any, keep_last: bool) -> YPath:
    """Follow ``loc`` through ``data``, skipping pydantic-only elements (union tags, ``[key]``)."""
    out: list[str | int] = []
    node = data
    for n, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            out.append(part)
        elif keep_last and n == len(loc) - 1 and isinstance(part, str | int):
            out.append(part)
    return tuple(out)


def issues_from_validation(exc: ValidationError, parsed: Parsed) -> list[Issue]:
    """Turn pydantic errors into located, readable issues."""
    out: list[Issue] = []
    nouns: dict[YPath, list[str]] = {}  # a union reports one type error per member: merge them
    for err in _real_errors(exc):
        loc = err["loc"]
        path = _walk(loc, parsed.data, keep_last=err["type"] in ("missing", "extra_forbidden"))
        noun = _NOUNS.get(err["type"])
        if noun and path in nouns:
            nouns[path].append(noun)
            index = next(i for i, issue in enumerate(out) if issue.path == format_path(path))
            expected = " or ".join(dict.fromkeys(nouns[path]))
            out[index] = Issue(out[index].path, out[index].line,
                               f"expected {expected}, got {_describe(err.get('input'))}")
            continue
        if noun:
            nouns[path] = [noun]
        out.append(Issue(format_path(path), parsed.line_of(path), _message(err, loc)))
    return out


def _real_errors(exc: ValidationError) -> list[Any]:
    """Pydantic's errors minus the spurious ``too_short`` it adds when items of a long-enough list fail."""
    out = []
    for err in exc.errors(include_url=False):
        value, ctx = err.get("input"), err.get("ctx") or {}
        if err["type"] == "too_short" and isinstance(value, list) and len(value) >= ctx.get("min_length", 0):
            continue
        out.append(err)
    return out


_NOUNS = {
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
    "int_from_float": "an integer", "bool_type": "true or false", "bool_parsing": "true or false",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "tuple_type": "a list", "list_type": "a list", "literal_error": None, "enum": None,
}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


@functools.cache
def _sections() -> dict[str, set[str]]:
    """Each model's place in the file (``subjobs[].fields[]``, breadth first) with its keys."""
    out: dict[str, set[str]] = {}
    todo: list[tuple[str, type[BaseModel]]] = [("the top level", Topology)]
    seen: set[type[BaseModel]] = set()
    while todo:
        where, cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        out[where] = set(cls.model_fields)
        for name, info in cls.model_fields.items():
            args, inner = [info.annotation], []
            while args:
                arg = args.pop()
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    inner.append(arg)
                args += typing.get_args(arg)
            for sub in inner:
                many = typing.get_origin(info.annotation) in (tuple, list) or "tuple[" in str(info.annotation)
                prefix = "" if where == "the top level" else f"{where}."
                todo.append((f"{prefix}{name}{'[]' if many else ''}", sub))
    return out


def _vocabulary() -> list[str]:
    return sorted(set().union(*_sections().values()))


def _key_hint(key: str) -> str:
    """A close known key, or where ``key`` belongs when it is a key of other sections only."""
    owners = [where for where, keys in _sections().items() if key in keys]
    if owners:
        return f" here (it is a key of {', '.join(owners[:4])})"
    match = difflib.get_close_matches(key, _vocabulary(), n=1, cutoff=0.7)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing"
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}{_key_hint(str(loc[-1]))}; see docs/topology.md"
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    if kind in ("enum", "literal_error"):
        return f"must be {ctx.get('expected', '')}, not {_describe(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must list at least {n} item{'s' if n != 1 else ''}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, not {_describe(value)}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}, not {_describe(value)}"
    noun = _NOUNS.get(kind)
    if noun:
        return f"expected {noun}, got {_describe(value)}"
    return str(err["msg"])


# -- partial validation ----------------------------------------------------------------------------
def _try(cls: type[BaseModel], value: Any) -> Any:
    """``value`` validated as ``cls``, or ``None``. Invalid entries of field and reference lists are
    replaced by placeholders and validation retried, so the rest of the item still gets checked."""
    for _attempt in range(2):
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            patched = _patch_lists(value, exc)
            if patched is None:
                return None
            value = patched
        except (ValueError, TypeError):
            return None
    return None


_PATCHABLE = ("fields", "scheduled_by", "jobs", "channel_data_groups", "key")


def _patch_lists(value: Any, exc: ValidationError) -> Any:
    patched = copy.deepcopy(value)
    for err in _real_errors(exc):
        loc = err["loc"]
        spots = [i for i in range(len(loc) - 1) if loc[i] in _PATCHABLE and isinstance(loc[i + 1], int)]
        if not spots:
            return None
        at = spots[-1]
        node = patched
        try:
            for part in loc[: at + 1]:
                node = node[part]
            index = loc[at + 1]
            placeholder = f"{PLACEHOLDER}{index}"
            node[index] = {"name": placeholder} if loc[at] == "fields" else placeholder
        except (KeyError, IndexError, TypeError):
            return None
    return patched


def _list(data: dict[str, Any], key: str) -> list[Any]:
    raw = data.get(key)
    return raw if isinstance(raw, list) else []


def _items(data: dict[str, Any], key: str, cls: type[BaseModel]) -> list[tuple[int, Any]]:
    return [(i, obj) for i, item in enumerate(_list(data, key)) if (obj := _try(cls, item)) is not None]


def _declared(data: dict[str, Any], key: str) -> set[str]:
    return {str(i["id"]).casefold() for i in _list(data, key) if isinstance(i, dict) and "id" in i}


def _partial(data: dict[str, Any]) -> Parts:
    """The structurally valid pieces of ``data``, for cross-reference checks."""
    return Parts(
        kafka=_try(m.KafkaConfig, data.get("kafka")),
        hq=_try(m.HqDatabase, data.get("hq")),
        jobs=_items(data, "jobs", m.Job),
        subjobs=_items(data, "subjobs", m.Subjob),
        groups=_items(data, "channel_data_groups", m.ChannelDataGroup),
        schedules=_items(data, "distribution_schedules", m.DistributionSchedule),
        declared_jobs=_declared(data, "jobs"),
        declared_groups=_declared(data, "channel_data_groups"),
        extensions=_try(m.Extensions, data.get("extensions") or {}) or m.Extensions(),
    )
