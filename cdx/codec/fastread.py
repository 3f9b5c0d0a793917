"""Compiled Avro readers: one straight-line Python function per writer schema, generated once.

``fastavro.schemaless_reader`` walks the parsed schema for every record and builds every value,
``source`` strings included; a channel bootstrap decodes millions of records of a few schemas.
``compile_reader(schema)`` turns a writer schema into the source of one function (varints read
inline, nested records inlined, unions of ``["null", T]`` as one byte test), executed once, that
returns what ``read_body(body, writer)`` returns: the same dicts, ``Decimal`` (the writer's
precision as context, as fastavro), aware UTC ``datetime``, ``date``, ``uuid.UUID``.

``keep`` projects: of a record whose full name is in it, only the fields named are decoded; the others
are skipped over (their bytes are not made into values), so its dict holds those fields alone.

``result`` lets a caller build its own value from the fields (a sink builds its records in the reader):
``result(fields)`` receives the variables holding every field read outside arrays and maps, by dotted
path (``"after"``, ``"after.ID"``, ``"position.topic"``), and returns lines of code that set ``out`` (what
the reader returns) plus the constants they name. Records named in ``flat`` are not assembled as dicts
(their fields are read, for ``result``). A field inside a nullable union is set only when its branch was
taken: test the enclosing field's variable first.

``compile_reader`` returns None for what it does not handle (recursive schemas, the time and local-
timestamp logical types, a decimal without a precision): callers then use ``read_body``. A reader
raises ``DecodeError`` on malformed bytes, or when bytes are left over after the body (as ``read_body``).
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable, Collection, Mapping
from decimal import Context
from typing import Any

from cdx.codec.canonical import fullname
from cdx.codec.errors import DecodeError

Reader = Callable[[bytes, int], Any]
"""``read(data, start)``: the value whose Avro binary starts at ``data[start]`` and ends at its end."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAYS_SHIFT = dt.date(1970, 1, 1).toordinal()
_FASTAVRO_LOGICAL = frozenset({"bytes-decimal", "fixed-decimal", "int-date", "int-time-millis", "long-time-micros",
                               "long-local-timestamp-micros", "long-local-timestamp-millis", "long-timestamp-micros",
                               "long-timestamp-millis", "string-uuid"})
"""Logical types fastavro converts (any other ``logicalType`` is read as its base type)."""
_FIXED = {"boolean": 1, "float": 4, "double": 8}
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class Unsupported(Exception):
    """The schema has something the generator does not compile (the caller falls back to fastavro)."""


def read_long(data: bytes, i: int) -> tuple[int, int]:
    """A zigzag varint at ``data[i]``: (value, offset after it) (shared with ``cdx.streams.avroscan``)."""
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), i
        shift += 7


def _size(data: bytes, i: int) -> tuple[int, int]:
    """A length (a varint that must not be negative)."""
    n, i = read_long(data, i)
    if n < 0:
        raise ValueError(f"negative length {n}")
    return n, i


DECIMALS_KEPT = 4096
"""Distinct values of one decimal field a reader keeps (``Decimal`` is immutable: equal bytes share one)."""


def _decimal(precision: int, scale: int) -> Callable[[bytes], Any]:
    """The converter of one decimal field: its unscaled bytes -> ``Decimal``; the first ``DECIMALS_KEPT``
    distinct values are kept and handed out again (prices repeat: a look-up costs a fifth of a conversion)."""
    ctx = Context(prec=precision)
    create, shift = ctx.create_decimal, -scale
    kept: dict[bytes, Any] = {}

    def read(raw: bytes) -> Any:
        plain = type(raw) is bytes  # (a memoryview's slices are not hashable)
        got = kept.get(raw) if plain else None
        if got is None:
            got = create(int.from_bytes(raw, "big", signed=True)).scaleb(shift, ctx)
            if plain and len(kept) < DECIMALS_KEPT:
                kept[raw] = got
        return got

    return read


class _Gen:
    """Writes the function's lines; ``consts`` are the names its code refers to (symbols, converters)."""

    def __init__(self, keep: Mapping[str, Collection[str]], flat: Collection[str] = ()) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {"_size": _size, "_float": struct.Struct("<f").unpack_from,
                                       "_double": struct.Struct("<d").unpack_from, "_EPOCH": _EPOCH,
                                       "_td": dt.timedelta, "_date": dt.date.fromordinal, "_UUID": uuid.UUID,
                                       "_DAYS_SHIFT": _DAYS_SHIFT}
        self.named: dict[str, Any] = {}
        self.keep = keep
        self.flat = flat
        self.fields: dict[str, str] = {}
        """Dotted field path -> its variable (fields read outside arrays and maps, see ``result``)."""
        self.path: list[str] = []
        self.looped = 0
        self.active: set[str] = set()
        self.n = 0

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, pad: str, *lines: str) -> None:
        self.lines.extend(pad + line for line in lines)

    # ------------------------------------------------------------------ scalars
    def varint(self, pad: str, v: str) -> None:
        """A zigzag varint, its loop inline (timestamps and offsets take 5-9 bytes)."""
        self.emit(pad, "b = data[i]", "i += 1", "if b < 128:", f"    {v} = (b >> 1) ^ -(b & 1)", "else:",
                  f"    {v}, s = b & 127, 7", "    while True:", "        b = data[i]", "        i += 1",
                  f"        {v} |= (b & 127) << s", "        if b < 128:", "            break", "        s += 7",
                  f"    {v} = ({v} >> 1) ^ -({v} & 1)")

    def raw(self, pad: str, v: str) -> None:
        """``v`` = the bytes of a ``bytes``/``string`` value (length-prefixed)."""
        self.emit(pad, "b = data[i]", "if b < 128 and not b & 1:", "    n = b >> 1", "    i += 1",
                  "else:", "    n, i = _size(data, i)", f"{v} = data[i:i + n]", "i += n")

    def name_of(self, schema: Mapping[str, Any], ns: str) -> tuple[str, str]:
        """(full name, namespace for what it encloses)."""
        full = fullname(str(schema["name"]), schema.get("namespace", ns) or None)
        return full, full.rpartition(".")[0]

    def resolve(self, ref: str, ns: str) -> Any:
        for full in (f"{ns}.{ref}" if ns and "." not in ref else ref, ref):
            if full in self.named:
                return self.named[full]
        raise Unsupported(f"unknown named type {ref!r}")

    # -------------------------------------------------------------------- types
    def read(self, schema: Any, v: str, pad: str, ns: str) -> None:
        """Lines that read one value of ``schema`` into ``v``."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            schema = self.resolve(schema, ns)
        if isinstance(schema, list):
            return self.union(schema, v, pad, ns)
        if isinstance(schema, Mapping):
            kind = schema.get("type")
            if kind == "record" or kind == "error":
                return self.record(schema, v, pad, ns)
            if kind in ("enum", "fixed"):
                return self.named_simple(schema, v, pad, ns)
            if kind == "array":
                return self.array(schema, v, pad, ns)
            if kind == "map":
                return self.map(schema, v, pad, ns)
            logical = f"{kind}-{schema.get('logicalType')}"
            if logical in _FASTAVRO_LOGICAL:
                return self.logical(schema, logical, v, pad, ns)
            return self.read(kind, v, pad, ns)
        self.primitive(str(schema), v, pad)
        return None

    def primitive(self, kind: str, v: str, pad: str) -> None:
        if kind == "null":
            self.emit(pad, f"{v} = None")
        elif kind == "boolean":
            self.emit(pad, f"{v} = data[i] != 0", "i += 1")
        elif kind in ("int", "long"):
            self.varint(pad, v)
        elif kind in ("float", "double"):
            self.emit(pad, f"{v} = _{kind}(data, i)[0]", f"i += {4 if kind == 'float' else 8}")
        elif kind == "bytes":
            self.raw(pad, v)
        elif kind == "string":
            self.raw(pad, v)
            self.emit(pad, f"{v} = {v}.decode()")
        else:
            raise Unsupported(f"type {kind!r}")

    def logical(self, schema: Mapping[str, Any], logical: str, v: str, pad: str, ns: str) -> None:
        if logical.endswith("-decimal"):
            precision, scale = schema.get("precision"), schema.get("scale", 0)
            if not isinstance(precision, int) or not isinstance(scale, int):
                raise Unsupported("decimal without an integer precision and scale")
            base = dict(schema)
            del base["logicalType"]
            self.read(base if base["type"] == "fixed" else "bytes", v, pad, ns)
            self.emit(pad, f"{v} = {self.const(_decimal(precision, scale))}({v})")
        elif logical in ("long-timestamp-micros", "long-timestamp-millis"):
            self.varint(pad, v)
            # timedelta(days, seconds, microseconds) positionally: keywords double the cost of the call
            self.emit(pad, f"{v} = _EPOCH + _td(0, 0, {v}{' * 1000' if logical.endswith('millis') else ''})")
        elif logical == "int-date":
            self.varint(pad, v)
            self.emit(pad, f"{v} = _date({v} + _DAYS_SHIFT)")
        elif logical == "string-uuid":
            self.primitive("string", v, pad)
            self.emit(pad, f"{v} = _UUID({v})")
        else:
            raise Unsupported(f"logical type {logical}")

    def union(self, branches: list[Any], v: str, pad: str, ns: str) -> None:
        if len(branches) == 2 and branches[0] == "null":  # the usual nullable column: one byte test
            self.emit(pad, "b = data[i]", "i += 1", "if b == 0:", f"    {v} = None", "elif b == 2:", "    pass")
            self.read(branches[1], v, pad + "    ", ns)
            self.emit(pad, "else:", "    raise ValueError('bad union index')")
            return
        u = self.var()
        self.varint(pad, u)
        for k, branch in enumerate(branches):
            self.emit(pad, f"{'if' if k == 0 else 'elif'} {u} == {k}:")
            self.read(branch, v, pad + "    ", ns)
        self.emit(pad, "else:", f"    raise ValueError(f'union index {{{u}}} out of range')")

    def named_simple(self, schema: Mapping[str, Any], v: str, pad: str, ns: str) -> None:
        full, _ = self.name_of(schema, ns)
        self.named[full] = schema
        if schema["type"] == "fixed":
            size = int(schema["size"])
            if schema.get("logicalType") == "decimal":
                return self.logical(schema, "fixed-decimal", v, pad, ns)
            self.emit(pad, f"{v} = data[i:i + {size}]", f"i += {size}")
            return None
        self.varint(pad, v)
        self.emit(pad, f"{v} = {self.const(tuple(schema['symbols']))}[{v}]")
        return None

    def record(self, schema: Mapping[str, Any], v: str, pad: str, ns: str) -> None:
        full, inner = self.name_of(schema, ns)
        if full in self.active:
            raise Unsupported(f"recursive record {full}")
        self.named[full] = schema
        self.active.add(full)
        wanted = self.keep.get(full)
        items = []
        for f in schema["fields"]:
            if wanted is not None and f["name"] not in wanted:
                self.skip(f["type"], pad, inner)
                continue
            fv = self.var()
            self.path.append(str(f["name"]))
            if not self.looped:
                self.fields[".".join(self.path)] = fv
            self.read(f["type"], fv, pad, inner)
            self.path.pop()
            items.append(f"{str(f['name'])!r}: {fv}")
        self.active.discard(full)
        if full not in self.flat:
            self.emit(pad, f"{v} = {{{', '.join(items)}}}")

    def skip(self, schema: Any, pad: str, ns: str) -> None:
        """Lines that move ``i`` past one value of ``schema`` (scalars without making their values)."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            schema = self.resolve(schema, ns)
        kind = schema.get("type") if isinstance(schema, Mapping) else schema
        if isinstance(kind, str) and kind in _PRIMITIVES:
            if kind in ("int", "long"):
                self.emit(pad, "while data[i] & 128:", "    i += 1", "i += 1")
            elif kind in ("string", "bytes"):
                self.emit(pad, "b = data[i]", "if b < 128 and not b & 1:", "    i += 1 + (b >> 1)", "else:",
                          "    n, i = _size(data, i)", "    i += n")
            elif kind != "null":
                self.emit(pad, f"i += {_FIXED[kind]}")
        elif isinstance(schema, list) and len(schema) == 2 and schema[0] == "null":
            self.emit(pad, "b = data[i]", "i += 1", "if b == 2:")
            self.skip(schema[1], pad + "    ", ns)
            self.emit(pad, "elif b != 0:", "    raise ValueError('bad union index')")
        else:
            self.read(schema, "_", pad, ns)

    def blocks(self, pad: str, item: Callable[[str], None]) -> None:
        c = self.var()
        self.emit(pad, "while True:")
        self.varint(pad + "    ", c)
        self.emit(pad + "    ", f"if {c} == 0:", "    break", f"if {c} < 0:", f"    {c} = -{c}")
        self.varint(pad + "        ", "_")
        self.emit(pad + "    ", f"for _ in range({c}):")
        self.looped += 1
        item(pad + "        ")
        self.looped -= 1

    def array(self, schema: Mapping[str, Any], v: str, pad: str, ns: str) -> None:
        x = self.var()
        self.emit(pad, f"{v} = []")

        def item(p: str) -> None:
            self.read(schema["items"], x, p, ns)
            self.emit(p, f"{v}.append({x})")

        self.blocks(pad, item)

    def map(self, schema: Mapping[str, Any], v: str, pad: str, ns: str) -> None:
        k, x = self.var(), self.var()
        self.emit(pad, f"{v} = {{}}")

        def item(p: str) -> None:
            self.primitive("string", k, p)
            self.read(schema["values"], x, p, ns)
            self.emit(p, f"{v}[{k}] = {x}")

        self.blocks(pad, item)


Result = Callable[[Mapping[str, str]], tuple[list[str], Mapping[str, Any]]]
"""``result(fields)``: lines that set ``out`` from the field variables, and the constants they name."""


def compile_reader(schema: Any, keep: Mapping[str, Collection[str]] | None = None, *, flat: Collection[str] = (),
                   result: Result | None = None) -> Reader | None:
    """The compiled reader of writer ``schema`` (its JSON value), or None (see the module docstring)."""
    gen = _Gen(keep or {}, flat)
    try:
        gen.read(schema, "_" if result is not None else "out", "        ", "")
        if result is not None:
            lines, consts = result(gen.fields)
            gen.emit("        ", *lines)
            gen.consts.update(consts)
    except (Unsupported, KeyError, TypeError, ValueError):
        return None
    source = "\n".join(["def read(data, i):", "    try:", *gen.lines,
                        "    except (IndexError, ValueError, TypeError, UnicodeDecodeError, OverflowError) as e:",
                        "        raise _Error(f'cannot decode Avro body: {type(e).__name__}: {e}') from None",
                        "    if i != len(data):",
                        "        raise _Error(f'{len(data) - i} bytes after the Avro body: wrong writer schema?')",
                        "    return out"])
    scope = {**gen.consts, "_Error": DecodeError}
    try:
        code = compile(source, f"<avro reader {str(schema)[:60]}>", "exec")
    except (SyntaxError, RecursionError, MemoryError):  # nested deeper than Python's blocks allow
        return None
    exec(code, scope)  # code generated above, from the schema
    reader: Reader = scope["read"]
    return reader
