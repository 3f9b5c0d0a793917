"""A load generator cheap enough to share two cores with the service it measures.

- :func:`open_loop` sends request ``i`` at ``start + i / rate`` whether or not earlier ones have
  answered (open loop: a slow service cannot slow the load down), and measures each latency from
  the **scheduled** send time, so time a request spent waiting for the client (a late timer, no
  free connection) counts against the service as a real client's would: no coordinated omission.
  One scheduling loop; a request is a task only from its send time on.
- :class:`RawHttp` speaks just enough HTTP/1.1 over keep-alive connections (request line, headers,
  ``Content-Length`` body; reads the status line and ``Content-Length``), which is all uvicorn sends.
  A request takes an idle connection, opens one (up to ``connections``) or waits for the next to
  come free, in order. httpx's async pool does work per waiting request, so at a thousand
  requests in flight it, not the service, would set the pace.
- :func:`run` runs a coroutine on uvloop when installed (cheaper than the default loop).

The generator's own CPU (``client_cpu_pct``: process CPU time over wall time, in % of one core)
is reported with every case, so a reader can see how much of the machine the client took.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from bench.common import percentiles

T = TypeVar("T")
LEAD_S = 0.2
"""Head start before the first scheduled send (connections are opened lazily within it)."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def open_loop(rate: float, seconds: float, send: Callable[[int], Awaitable[bool]]) -> dict[str, float]:
    """Call ``send(i)`` at ``start + i / rate`` for ``seconds``; latency (ms) from the scheduled time.

    Returns p50/p95/p99 (ms), ``throughput`` (answers per second of wall time, first send to last
    answer), ``errors`` (``send`` returned False or raised) and ``client_cpu_pct``."""
    n = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            ok = await send(i)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            ok = False
        latencies.append((time.perf_counter() - scheduled) * 1000)
        errors += 0 if ok else 1

    cpu_start, start = time.process_time(), time.perf_counter() + LEAD_S
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.gather(*list(pending))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {**percentiles(latencies), "throughput": n / wall, "errors": errors, "client_cpu_pct": 100 * cpu / wall}


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, raw: bytes) -> int:
        """Send one request; read its whole response; its status code."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        if length:
            await self.reader.readexactly(length)
        return int(head[9:12])

    def close(self) -> None:
        self.writer.close()


class RawHttp:
    """HTTP/1.1 keep-alive client on at most ``connections`` connections (see module docstring)."""

    def __init__(self, url: str, headers: dict[str, str], connections: int = 64) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.limit = host, int(port), connections
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self.opened = 0

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> int:
        """The status of ``method path``; ``headers`` as ready ``Name: value\\r\\n`` lines."""
        raw = (f"{method} {path} HTTP/1.1\r\n{self.fixed}{headers}Content-Length: {len(body)}\r\n"
               "Content-Type: application/json\r\n\r\n").encode() + body
        conn = await self._take()
        try:
            status = await conn.exchange(raw)
        except BaseException:
            conn.close()
            self.opened -= 1
            self._give(None)
            raise
        self._give(conn)
        return status

    async def _take(self) -> _Connection:
        if self.idle:
            return self.idle.pop()
        if self.opened < self.limit:
            self.opened += 1
            try:
                return _Connection(*await asyncio.open_connection(self.host, self.port))
            except BaseException:
                self.opened -= 1
                raise
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        conn = await waiter
        return conn if conn is not None else await self._take()

    def _give(self, conn: _Connection | None) -> None:
        """Hand ``conn`` (None: a slot freed by a broken connection) to the longest waiter, else keep it."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
