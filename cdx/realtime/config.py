"""``realtime.yaml``: who may call the Real-time Service, and where its HQ tables are.

```yaml
credentials:
  - principal: store-0001            # a channel id or an offline-register id of the topology
    api_key: ${CDX_RT_KEY_STORE_0001}  # must be a ${VAR} reference: keys never live in files
  - principal: store-0001-pos-01
    api_key_sha256: 5e88...           # or the key's SHA-256 (hex), e.g. from `cdx realtime hash-key`
retry_after_seconds: 5               # what a 503 tells the register to wait
customers: {table: dbo.CUSTTABLE, party_table: dbo.DIRPARTYTABLE}
transactions: {header: dbo.RETAILTRANSACTIONTABLE, lines: dbo.RETAILTRANSACTIONSALESTRANS}
```

Keys are hashed (SHA-256) as soon as they are read; the plain key is never kept or logged.
With TLS client certificates, a certificate whose common name is a principal id needs no entry.
Errors name the file and the path in it (``realtime.yaml: credentials[2].principal: ...``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdx.errors import ConfigError
from cdx.topology import TableRef, Topology
from cdx.topology.env import EnvError, has_reference, resolve

MIN_KEY_LENGTH = 16


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CredentialSpec(_Model):
    principal: str = Field(min_length=1, max_length=60)
    api_key: str | None = None
    api_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @model_validator(mode="after")
    def _one_key(self) -> CredentialSpec:
        if (self.api_key is None) == (self.api_key_sha256 is None):
            raise ValueError("give exactly one of api_key (a ${VAR} reference) or api_key_sha256")
        if self.api_key is not None and not has_reference(self.api_key):
            raise ValueError("api_key must be a ${VAR} reference to an environment variable, not the key itself")
        return self


class CustomerTables(_Model):
    table: str = "dbo.CUSTTABLE"
    party_table: str = "dbo.DIRPARTYTABLE"


class TransactionTables(_Model):
    header: str = "dbo.RETAILTRANSACTIONTABLE"
    lines: str = "dbo.RETAILTRANSACTIONSALESTRANS"


class RealtimeSpec(_Model):
    credentials: tuple[CredentialSpec, ...] = ()
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    customers: CustomerTables = CustomerTables()
    transactions: TransactionTables = TransactionTables()


@dataclass(frozen=True)
class Principal:
    """A caller: a channel, or an offline register acting for its channel."""

    id: str
    channel: str
    legal_entities: tuple[str, ...]


@dataclass(frozen=True)
class RealtimeSettings:
    """Everything the app needs besides the database: callers by key hash, tables, retry hint."""

    principals: Mapping[str, Principal]
    key_hashes: Mapping[str, str]
    retry_after_seconds: int
    customer_table: TableRef
    party_table: TableRef
    header_table: TableRef
    lines_table: TableRef

    def principal_for_key(self, key: str) -> Principal | None:
        principal_id = self.key_hashes.get(hash_key(key))
        return self.principals.get(principal_id) if principal_id else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def principals_of(topology: Topology) -> dict[str, Principal]:
    """Every channel and offline register of the topology as a principal."""
    out: dict[str, Principal] = {}
    for group in topology.channel_data_groups:
        for channel in group.channels:
            out[channel.id] = Principal(channel.id, channel.id, tuple(group.legal_entities))
            for register in channel.offline_registers:
                out[register.id] = Principal(register.id, channel.id, tuple(group.legal_entities))
    return out


def load_settings(path: Path | None, topology: Topology, environ: Mapping[str, str] | None = None
                  ) -> RealtimeSettings:
    """Read and check ``path`` (None: no API keys, defaults) against ``topology``; ``ConfigError`` on a problem."""
    data: Any = {} if path is None else _read_yaml(path)
    where = str(path) if path else "realtime settings"
    try:
        spec = RealtimeSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {loc}: {first['msg']}") from None
    return settings_from(spec, topology, where, os.environ if environ is None else environ)


def settings_from(spec: RealtimeSpec, topology: Topology, where: str, environ: Mapping[str, str]
                  ) -> RealtimeSettings:
    principals = principals_of(topology)
    hashes: dict[str, str] = {}
    for i, cred in enumerate(spec.credentials):
        at = f"{where}: credentials[{i}]"
        if cred.principal not in principals:
            raise ConfigError(f"{at}.principal: {cred.principal!r} is not a channel or offline register of the"
                              f" topology; use one of {', '.join(sorted(principals)) or '(none)'}")
        digest = cred.api_key_sha256.lower() if cred.api_key_sha256 else _hash_reference(cred.api_key or "", at,
                                                                                          environ)
        if digest in hashes:
            raise ConfigError(f"{at}: {cred.principal!r} has the same API key as {hashes[digest]!r}; give each"
                              " channel and register its own key")
        hashes[digest] = cred.principal
    return RealtimeSettings(principals, hashes, spec.retry_after_seconds, _table(spec.customers.table, where),
                            _table(spec.customers.party_table, where), _table(spec.transactions.header, where),
                            _table(spec.transactions.lines, where))


def _hash_reference(reference: str, at: str, environ: Mapping[str, str]) -> str:
    try:
        key = resolve(reference, environ)
    except EnvError as exc:
        raise ConfigError(f"{at}.api_key: {exc}") from None
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{at}.api_key: the key is shorter than {MIN_KEY_LENGTH} characters; use a random one,"
                          " e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return hash_key(key)


def _table(text: str, where: str) -> TableRef:
    try:
        return TableRef.parse(text)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{where}: invalid table name {text!r}: {exc}") from None


def _read_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass an existing file with --config") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        why = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{where}: not valid YAML: {why}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'credentials' at the top level")
    return data
