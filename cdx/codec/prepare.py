"""Normalize Python values before Avro encoding, so equal values always give equal bytes.

fastavro alone would encode a naive ``datetime`` in the machine's local time zone and write a UUID
string exactly as given (``ABC...`` and ``abc...`` would be different keys, hence different
partitions and no compaction). ``compile_prepare(schema)`` builds, once per schema, a function that:

- timestamp-micros: naive ``datetime`` is taken as UTC; aware ones are kept; ints (micros) pass;
- uuid: ``UUID``, str (any case, with or without braces/dashes) or 16 bytes -> canonical lower-case str;
- decimal: ``Decimal``/int/str -> the Avro bytes of the unscaled value at exactly the schema's scale
  (minimal two's complement, as Avro Java writes it); refuses values that would lose digits or need
  more than ``precision`` digits;
- date: ``date`` (a ``datetime`` gives its date part) or int days pass;
- int/long: integers in the 32/64-bit range (integral ``Decimal``/float are converted), so nothing is
  silently truncated or written out of range; double: int/``Decimal`` become float; boolean: bool
  (or int 0/1), never the truthiness of anything else.

Other fields (string, bytes, boolean) are left to fastavro, which type-checks them. Values of
``["null", T]`` unions are given as fastavro's ``(branch name, value)`` tuples, which spares fastavro
a full validation of the value per union (the write is then several times faster).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cdx.codec.canonical import NAMED, PRIMITIVES, fullname
from cdx.codec.errors import EncodeError, SchemaError

Prepare = Callable[[Any], Any]
UTC = dt.UTC


def _timestamp(v: Any) -> Any:
    if type(v) is dt.datetime and v.tzinfo is None:  # the common case (databases return naive UTC)
        return v.replace(tzinfo=UTC)
    if isinstance(v, dt.datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise EncodeError(f"timestamp needs a datetime (or int microseconds), got {type(v).__name__} {v!r}")


def _uuid(v: Any) -> str:
    try:
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, str):
            return str(uuid.UUID(v))
        if isinstance(v, bytes | bytearray) and len(v) == 16:
            return str(uuid.UUID(bytes=bytes(v)))
    except ValueError:
        pass
    raise EncodeError(f"not a UUID: {v!r}")


def _date(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise EncodeError(f"date needs a date, got {type(v).__name__} {v!r}")


def _unscaled_bytes(n: int) -> bytes:
    """Minimal big-endian two's complement, as Java's ``BigInteger.toByteArray`` (Avro Java, Connect)."""
    return n.to_bytes((n if n >= 0 else ~n).bit_length() // 8 + 1, "big", signed=True)


def _decimal(precision: int, scale: int, fixed_size: int | None = None) -> Prepare:
    exponent = decimal.Decimal(1).scaleb(-scale)
    ctx = decimal.Context(prec=max(precision, 28) + 4)
    # fast path: one exact multiplication (Inexact/InvalidOperation trapped, so never a silent rounding)
    exact = decimal.Context(prec=max(precision, 28) + scale + 4, traps=[decimal.Inexact, decimal.InvalidOperation])
    factor = 10**scale
    limit = 10**precision

    def prep(v: Any) -> bytes:
        if type(v) is decimal.Decimal:
            try:
                scaled = exact.multiply(v, factor)
                n = int(scaled)
            except (decimal.Inexact, decimal.InvalidOperation, ValueError, OverflowError):
                n = None  # not finite, or too many digits: the checks below say which
            if n is not None and n == scaled and -limit < n < limit:
                return n.to_bytes(fixed_size, "big", signed=True) if fixed_size is not None else _unscaled_bytes(n)
        return checked(v)

    def checked(v: Any) -> bytes:
        if isinstance(v, bool) or not isinstance(v, decimal.Decimal | int | str | float):
            raise EncodeError(f"decimal({precision},{scale}) needs a Decimal, got {type(v).__name__} {v!r}")
        try:
            d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
            if not d.is_finite():
                raise EncodeError(f"decimal({precision},{scale}) cannot hold {v!r}")
            q = d.quantize(exponent, context=ctx)
        except decimal.InvalidOperation:
            raise EncodeError(f"{v!r} does not fit decimal({precision},{scale})") from None
        if q != d:
            raise EncodeError(f"{v!r} has more than {scale} decimal places for decimal({precision},{scale})")
        n = int(q.scaleb(scale, context=ctx))
        if not -limit < n < limit:
            raise EncodeError(f"{v!r} has more than {precision} digits for decimal({precision},{scale})")
        if fixed_size is not None:
            return n.to_bytes(fixed_size, "big", signed=True)
        return _unscaled_bytes(n)

    return prep


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _integer(bits: int) -> Prepare:
    lo, hi = _INT32 if bits == 32 else _INT64
    kind = "int" if bits == 32 else "long"

    def prep(v: Any) -> int:
        if type(v) is int and lo <= v <= hi:  # the common case, first
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            n = v
        elif isinstance(v, decimal.Decimal | float) and v == v and v == int(v):
            n = int(v)  # an integral Decimal (SQL numeric(p, 0)) or float
        else:
            raise EncodeError(f"{kind} needs an integer, got {type(v).__name__} {v!r}")
        if not lo <= n <= hi:
            raise EncodeError(f"{v!r} is out of range for Avro {kind} ({bits}-bit)")
        return n

    return prep


def _double(v: Any) -> Any:
    if isinstance(v, float):
        return v
    if isinstance(v, int | decimal.Decimal) and not isinstance(v, bool):
        return float(v)
    raise EncodeError(f"double needs a float, got {type(v).__name__} {v!r}")


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):  # SQL bit read as an int
        return bool(v)
    raise EncodeError(f"boolean needs a bool, got {type(v).__name__} {v!r}")


_PRIMITIVE_PREP: dict[str, Prepare] = {
    "int": _integer(32),
    "long": _integer(64),
    "double": _double,
    "boolean": _boolean,
}


def _branch_name(schema: Any, ns: str | None) -> str:
    """The name fastavro's tuple notation uses for a union branch."""
    if isinstance(schema, str):
        return schema if schema in PRIMITIVES else fullname(schema, ns)
    if isinstance(schema, Mapping):
        typ = schema.get("type")
        if typ in NAMED:
            return fullname(schema["name"], schema.get("namespace", ns))
        if isinstance(typ, str):
            return _branch_name(typ, ns) if typ not in ("array", "map") else typ
    raise SchemaError(f"cannot name union branch {schema!r}")


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Prepare | None] = {}
        # Set while a named type is being compiled, for recursive references.
        self.cells: dict[str, list[Prepare | None]] = {}

    def compile(self, schema: Any, ns: str | None) -> Prepare | None:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _PRIMITIVE_PREP.get(schema)
            full = fullname(schema, ns)
            if full in self.named:
                return self.named[full]
            if full in self.cells:
                cell = self.cells[full]
                return lambda v: cell[0](v) if cell[0] is not None else v
            raise SchemaError(f"unknown Avro type name {full!r}")
        if isinstance(schema, list):
            return self._union(schema, ns)
        if not isinstance(schema, Mapping):
            raise SchemaError(f"not an Avro schema: {schema!r}")
        typ = schema.get("type")
        if not isinstance(typ, str):
            return self.compile(typ, ns)
        logical = schema.get("logicalType")
        if logical == "timestamp-micros" and typ == "long":
            return _timestamp
        if logical == "uuid" and typ == "string":
            return _uuid
        if logical == "date" and typ == "int":
            return _date
        if logical == "decimal" and typ in ("bytes", "fixed"):
            size = int(schema["size"]) if typ == "fixed" else None
            return _decimal(int(schema["precision"]), int(schema.get("scale", 0)), size)
        if typ in PRIMITIVES:
            return _PRIMITIVE_PREP.get(typ)
        if typ in NAMED:
            return self._named(schema, typ, ns)
        if typ == "array":
            item = self.compile(schema["items"], ns)
            return None if item is None else (lambda v: [item(x) for x in v])
        if typ == "map":
            val = self.compile(schema["values"], ns)
            return None if val is None else (lambda v: {k: val(x) for k, x in v.items()})
        return self.compile(typ, ns)

    def _union(self, branches: list[Any], ns: str | None) -> Prepare | None:
        others = [b for b in branches if b != "null"]
        if len(branches) == 2 and len(others) == 1:
            # ["null", T]: name the branch with fastavro's tuple notation, so fastavro does not have to
            # validate the whole value against T to choose it (that costs more than the write itself).
            name = _branch_name(others[0], ns)
            inner = self.compile(others[0], ns)
            if inner is None:
                return lambda v: None if v is None else (name, v)
            return lambda v: None if v is None else (name, inner(v))
        for b in branches:
            self.compile(b, ns)  # define named types for later references
        # General unions are not cdx rows; leave the value as is for fastavro to pick a branch.
        return None

    def _named(self, schema: Mapping[str, Any], typ: str, ns: str | None) -> Prepare | None:
        full = fullname(schema["name"], schema.get("namespace", ns))
        inner_ns = full.rpartition(".")[0] or None
        if typ not in ("record", "error"):
            self.named[full] = None
            return None
        cell: list[Prepare | None] = [None]
        self.cells[full] = cell
        fields: list[tuple[str, Prepare]] = []
        for f in schema.get("fields", []):
            p = self.compile(f["type"], inner_ns)
            if p is not None:
                fields.append((f["name"], p))
        del self.cells[full]
        if not fields:
            self.named[full] = None
            return None

        def prep(v: Any) -> Any:
            if type(v) is not dict and not isinstance(v, Mapping):
                raise EncodeError(f"{full} needs a dict, got {type(v).__name__}")
            out = dict(v)
            for name, p in fields:
                x = out.get(name)
                if x is not None:
                    try:
                        out[name] = p(x)
                    except EncodeError as e:
                        raise EncodeError(f"{full}.{name}: {e.reason}") from None
            return out

        cell[0] = prep
        self.named[full] = prep
        return prep


def compile_prepare(schema: Any) -> Prepare | None:
    """The normalizing function for values of ``schema`` (decoded JSON), or None if none is needed."""
    return _Compiler().compile(schema, None)
