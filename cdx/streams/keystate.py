"""Per-key routing state: which groups hold each routed row (see ``cdx.streams.stateful``).

Changelog: the compacted topic ``<prefix>._router_keys`` (1 partition), written by the
transactional engine **in the same Kafka transaction** as the routed records and the consumed
offsets, so the state always matches what the group topics hold (read_committed). Record key:
``<source topic> NUL <source key bytes>``; value: the group ids, newline-separated (empty: seen,
held by no group); a tombstone forgets the key.

``KeyState`` keeps a transaction's changes in an overlay: ``commit()`` applies them to the store,
``abort()`` drops them. ``restore()`` reads the changelog from where the store last read it to
its end, open transactions settled (``cdx.streams.progress.read_settled``), at start and after
every assignment, so a partition that moved from another worker comes with that worker's last
committed state. Stores: ``MemoryKeys`` (a dict), or ``SqliteKeys`` (a file in ``--datadir``;
it also remembers how far it read the changelog, so a restart reads only what was added since;
for millions of keys).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cdx.streams.progress import read_settled

Held = frozenset[str]


def encode_held(held: Held | None) -> bytes | None:
    return None if held is None else "\n".join(sorted(held)).encode()


def decode_held(data: bytes | None) -> Held | None:
    if data is None:
        return None
    return frozenset(data.decode().split("\n")) if data else frozenset()


class KeyStore(Protocol):
    def get(self, key: bytes) -> Held | None: ...

    def apply(self, changes: Mapping[bytes, Held | None], next_offsets: Mapping[int, int] | None = None) -> None: ...

    def next_offsets(self) -> dict[int, int]: ...

    def __len__(self) -> int: ...


class MemoryKeys:
    """Everything in a dict (equal sets shared); the changelog is read from its start at every process start."""

    def __init__(self) -> None:
        self._data: dict[bytes, Held] = {}
        self._next: dict[int, int] = {}
        self._interned: dict[Held, Held] = {}

    def get(self, key: bytes) -> Held | None:
        return self._data.get(key)

    def apply(self, changes: Mapping[bytes, Held | None], next_offsets: Mapping[int, int] | None = None) -> None:
        for k, v in changes.items():
            if v is None:
                self._data.pop(k, None)
            else:
                self._data[k] = self._interned.setdefault(v, v)
        if next_offsets:
            self._next.update(next_offsets)

    def next_offsets(self) -> dict[int, int]:
        return dict(self._next)

    def __len__(self) -> int:
        return len(self._data)


class SqliteKeys:
    """A SQLite file: ``keys(k, v)`` plus how far the changelog was read; survives restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS keys (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self.conn.execute("CREATE TABLE IF NOT EXISTS changelog (partition INTEGER PRIMARY KEY, next INTEGER)")

    def get(self, key: bytes) -> Held | None:
        row = self.conn.execute("SELECT v FROM keys WHERE k = ?", (key,)).fetchone()
        return None if row is None else decode_held(row[0])

    def apply(self, changes: Mapping[bytes, Held | None], next_offsets: Mapping[int, int] | None = None) -> None:
        self.conn.execute("BEGIN")
        with self.conn:  # committed, or rolled back on any exception
            self.conn.executemany("DELETE FROM keys WHERE k = ?", [(k,) for k, v in changes.items() if v is None])
            self.conn.executemany("INSERT OR REPLACE INTO keys (k, v) VALUES (?, ?)",
                                  [(k, encode_held(v)) for k, v in changes.items() if v is not None])
            self.conn.executemany("INSERT OR REPLACE INTO changelog (partition, next) VALUES (?, ?)",
                                  list((next_offsets or {}).items()))

    def next_offsets(self) -> dict[int, int]:
        return {int(p): int(n) for p, n in self.conn.execute("SELECT partition, next FROM changelog")}

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM keys").fetchone()[0])


def open_store(kind: str, datadir: Path | None) -> KeyStore:
    """``memory`` or ``sqlite`` (``<datadir>/router-keys.sqlite``)."""
    if kind == "memory":
        return MemoryKeys()
    if kind == "sqlite":
        if datadir is None:
            raise ValueError("the sqlite key store needs --datadir")
        return SqliteKeys(datadir / "router-keys.sqlite")
    raise ValueError(f"unknown key store {kind!r}: use memory or sqlite")


class KeyState:
    """The store plus the open transaction's overlay; ``changed`` yields the changelog records to write."""

    def __init__(self, config: Mapping[str, Any], topic: str, store: KeyStore, timeout: float = 60.0) -> None:
        self.config = dict(config)
        self.topic = topic
        self.store = store
        self.timeout = timeout
        self._pending: dict[bytes, Held | None] = {}

    @staticmethod
    def key(topic: str, key: bytes) -> bytes:
        return topic.encode() + b"\0" + key

    def restore(self) -> int:
        """Apply the changelog from where the store last read it to its end; returns records read."""
        start = self.store.next_offsets() or None
        batch: dict[bytes, Held | None] = {}
        nexts: dict[int, int] = {}
        n = 0
        for msg in read_settled(self.config, self.topic, start, self.timeout):
            k = msg.key()
            nexts[msg.partition() or 0] = (msg.offset() or 0) + 1
            n += 1
            if k is not None:
                batch[k] = decode_held(msg.value())
            if len(batch) >= 50_000:
                self.store.apply(batch, nexts)
                batch = {}
        self.store.apply(batch, nexts)
        return n

    def get(self, key: bytes) -> Held | None:
        if key in self._pending:
            return self._pending[key]
        return self.store.get(key)

    def set(self, key: bytes, held: Held | None) -> bool:
        """Record ``held`` for the open transaction; True when it differs (a changelog record is due)."""
        if self.get(key) == held:
            return False
        self._pending[key] = held
        return True

    def put(self, key: bytes, held: Held | None) -> None:
        """Record ``held`` for the open transaction (the caller knows it differs)."""
        self._pending[key] = held

    def commit(self) -> None:
        self.store.apply(self._pending)
        self._pending = {}

    def abort(self) -> None:
        self._pending = {}
