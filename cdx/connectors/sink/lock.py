"""One applying sink per channel database: a lock kept in the channel database itself.

Two ``cdx sink`` processes started for the same channel (or offline-register) database must not
both apply. Each sink takes ``ChannelLock`` on its connection before it loads its state or joins
its consumer group:

- **PostgreSQL, SQL Server** (``Dialect.session_locks``): a session lock the server holds for as
  long as the connection lives (``pg_try_advisory_lock`` of a 64-bit hash of the lock name;
  ``sp_getapplock`` with ``@LockOwner = 'Session'``). A killed holder's connection ends and the
  lock with it. A row in ``cdx_state`` (namespace ``lock:<name>``) names the holder for others.
- **SQLite**: that row *is* the lock, a lease: ``{"holder", "host", "pid", "since", "expires"}``.
  It is taken or renewed inside write transactions (SQLite serialises them), so two sinks never
  both see it free. The holder confirms it inside every batch transaction (``confirm``: a batch
  of a sink that lost its lease rolls back) and renews it while idle; a lease ends when it
  expires (``LEASE_SECONDS``), when its holder releases it (clean stop), or at once when its
  holder was a process in the same pid space (same boot and pid namespace) that no longer exists.

A sink that finds the lock held raises ``ChannelLocked`` (a ``RetriableError``): it stands by,
retrying with back-off and saying so in one line per step that names the channel and the holder,
and takes over when the holder goes. The lock name is the sink's consumer group
(``<prefix>-sink-<owner>``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.sink.state import NAMESPACE_LIMIT, fit_name
from cdx.dialects import Connection, Dialect
from cdx.errors import FatalError, RetriableError

LEASE_SECONDS = 30.0
"""How long a SQLite lease lasts without renewal."""
RENEW_SHARE = 1 / 3
"""A holder renews its lease when this share of it is gone (idle: in its housekeeping step; else in a batch)."""
NAMESPACE = "lock:"


class ChannelLocked(RetriableError):
    """Another process holds the channel database's lock (or this one lost it); ``holder`` says who."""

    def __init__(self, message: str, channel: str = "", holder: str = "") -> None:
        super().__init__(message)
        self.channel, self.holder = channel, holder


def this_process(what: str = "cdx sink") -> str:
    """The holder name of this process: ``<what> pid <pid> on <host>``."""
    return f"{what} pid {os.getpid()} on {socket.gethostname()}"


@dataclass
class ChannelLock:
    """The lock ``name`` of the database of channel ``channel`` (see the module docstring)."""

    dialect: Dialect
    name: str
    channel: str
    lease: float = LEASE_SECONDS
    holder: str = field(default_factory=this_process)
    held: bool = False
    _renewed: float = field(default=0.0, repr=False)

    def acquire(self, conn: Connection) -> None:
        """Take the lock in transactions of its own (``ensure_state_table`` done). Raises
        ``ChannelLocked`` naming the holder when another sink has it."""
        self.held = False
        d = self.dialect
        if d.session_locks:
            if not d.try_session_lock(conn, self.name):
                with d.transaction(conn):
                    raise self._locked(_holder_info(d, conn, self.name))
            with d.transaction(conn):
                self._write(conn, expires=None)
        else:
            with d.transaction(conn):
                info = _holder_info(d, conn, self.name)
                if info is not None and not self._mine(info) and not _ended(info):
                    raise self._locked(info)
                self._write(conn, expires=time.time() + self.lease)
        self.held = True

    def confirm(self, conn: Connection) -> None:
        """In the caller's write transaction: the lock is still this sink's (a lease is renewed when a
        third of it is gone). Raises ``ChannelLocked`` when it was lost; the caller rolls back."""
        if self.dialect.session_locks:
            return  # held by this very connection for as long as it lives
        info = _holder_info(self.dialect, conn, self.name)
        if not self.held or info is None or not self._mine(info):
            self.held = False
            raise ChannelLocked(f"channel {self.channel}: this sink lost its lease on the channel database"
                                f" ({held_text(info)}); standing by")
        if time.time() - self._renewed >= self.lease * RENEW_SHARE:
            self._write(conn, expires=time.time() + self.lease)

    def renew(self, conn: Connection) -> None:
        """``confirm`` in a transaction of its own (idle sinks), when a third of the lease is gone."""
        if self.dialect.session_locks or time.time() - self._renewed < self.lease * RENEW_SHARE:
            return
        with self.dialect.transaction(conn):
            self.confirm(conn)

    def release(self, conn: Connection) -> None:
        """Give the lock up (clean stop), so a standing-by sink takes over at once. Best effort."""
        if not self.held:
            return
        self.held = False
        d = self.dialect
        with d.transaction(conn):
            info = _holder_info(d, conn, self.name)
            if info is not None and self._mine(info):
                d.write_state(conn, _namespace(self.name), {"holder": json.dumps({**info, "expires": 0})})
        if d.session_locks:
            d.release_session_lock(conn, self.name)

    # ------------------------------------------------------------------------------------------------
    def _write(self, conn: Connection, *, expires: float | None) -> None:
        now = time.time()
        self._renewed = now
        info = {"holder": self.holder, "host": socket.gethostname(), "node": _node(), "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "expires": expires}
        self.dialect.write_state(conn, _namespace(self.name), {"holder": json.dumps(info)})

    def _mine(self, info: dict[str, Any]) -> bool:
        return info.get("holder") == self.holder

    def _locked(self, info: dict[str, Any] | None) -> ChannelLocked:
        held = held_text(info)
        return ChannelLocked(f"channel {self.channel}: another process is applying to this channel database"
                             f" ({held}); standing by until it stops", self.channel, held)


def take_or_refuse(dialect: Dialect, conn: Connection, name: str, channel: str, what: str) -> ChannelLock:
    """For one-shot commands that need the sink stopped (``cdx channel resync``, ``cdx replay``): the
    channel lock, or ``FatalError`` naming the holder (state table ensured). ``cdx dlq replay`` runs
    beside a sink by design (it locks the sink's offset rows instead) and does not take it."""
    lock = ChannelLock(dialect, name, channel, holder=this_process(what))
    try:
        lock.acquire(conn)
    except ChannelLocked as e:
        raise FatalError(f"channel {e.channel}: another process is applying to this channel database ({e.holder});"
                         " stop it first") from None
    return lock


def _namespace(name: str) -> str:
    return fit_name(NAMESPACE, name, NAMESPACE_LIMIT)


def _holder_info(dialect: Dialect, conn: Connection, name: str) -> dict[str, Any] | None:
    """The holder row of the lock ``name`` (caller's transaction); None when missing or unreadable."""
    raw = dialect.read_state(conn, _namespace(name)).get("holder")
    try:
        info = json.loads(raw) if raw else None
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _node() -> str:
    """This process's pid space: boot id and pid namespace (Linux); "" where they cannot be read, and
    then a lease only ends by expiry or release. Two hosts or containers never share it."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def _ended(info: dict[str, Any]) -> bool:
    """A lease that expired, was released, or whose holder process (same pid space) is gone."""
    expires = info.get("expires")
    if not isinstance(expires, int | float) or expires <= time.time():
        return True
    node = _node()
    if node and info.get("node") == node and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def live_holder(dialect: Dialect, conn: Connection, name: str) -> dict[str, Any] | None:
    """Who applies to the database now (``cdx status``, commands that need the sink stopped): the lock
    ``name``'s holder row (``{}`` when a session lock is held but the row is unreadable), or None when
    nobody holds it. Session locks are tested by taking and at once releasing them; a lease counts
    while it has not ended. A database without a state table (never served) has no holder."""
    try:
        info = _holder_info(dialect, conn, name)
    except Exception:  # no state table yet: nobody can be holding it
        conn.rollback()
        info = None
    if dialect.session_locks:
        if dialect.try_session_lock(conn, name):
            dialect.release_session_lock(conn, name)
            return None
        return info or {}
    return None if info is None or _ended(info) else info


def member_name(name: str, info: dict[str, Any]) -> str:
    """How ``cdx status`` lists a lock holder: ``<name>@<host> (<holder>)``."""
    return f"{name}@{info.get('host', '?')} ({info.get('holder', 'holder unknown')})"


def held_text(info: dict[str, Any] | None) -> str:
    if info is None:
        return "holder unknown"
    return f"held by {info.get('holder', '?')} since {info.get('since', '?')}"
