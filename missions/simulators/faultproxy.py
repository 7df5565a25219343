"""A TCP proxy that puts network faults between a client and a server, on real sockets.

``FaultProxy(upstream_host, upstream_port).start()`` listens on a free loopback
port (or the one given) and forwards every connection to the upstream. Its
asyncio loop runs in a thread of its own, so a test (or ``manage.py
fault_proxy``) changes the faults while connections are open; every setter is
thread-safe and takes effect on the next chunk of data.

The faults, per direction where that makes sense (``UP``: client to upstream,
``DOWN``: upstream to client, ``BOTH``):

- **latency** (seconds) and **jitter** (up to that many seconds more, uniform):
  each chunk is delivered that long after it was read. Order is kept (TCP
  keeps it), and throughput is not capped by it: chunks in flight queue up.
  A request that a client gave up on still reaches the upstream late, as on
  a slow network, which is what idempotency keys exist for.
- **bandwidth** (bytes/s): each direction is paced to at most that rate.
- **blackhole**: connections are accepted and their bytes read, but nothing
  is forwarded either way and nothing answers; a client waits until its own
  timeout. New connections during a blackhole never reach the upstream;
  on open ones, bytes read during it are dropped, and bytes read before it
  (still delayed by latency) wait and go on after ``heal()``.
- **reset**: ``reset_connections()`` sends a TCP RST on every open connection
  (SO_LINGER 0, then close), so both ends see ECONNRESET; ``resetting(True)``
  does the same to every new connection as soon as it is accepted.
- **half-open** (``stall(direction)``): one direction stops being forwarded
  while the connection stays open; what arrives meanwhile is held and
  delivered when the stall is lifted.
- **refuse**: the listening socket is closed, so new connections are refused
  (ECONNREFUSED); open ones carry on. ``heal()`` listens on the same port again.
- **heal**: clears every fault.

``stats()`` returns the counters: connections accepted, bytes each way
(forwarded), bytes swallowed by a blackhole, resets done.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

CHUNK_BYTES = 64 * 1024
# Bandwidth pacing sends at most this many pieces a second, so a capped stream stays smooth.
PACING_SLICES_PER_SECOND = 20
START_TIMEOUT_SECONDS = 10.0


class Direction(Enum):
    UP = "up"  # client -> upstream
    DOWN = "down"  # upstream -> client
    BOTH = "both"

    def covers(self) -> tuple[Direction, ...]:
        return (Direction.UP, Direction.DOWN) if self is Direction.BOTH else (self,)


@dataclass(frozen=True)
class PathFaults:
    """Faults of one direction."""

    latency_seconds: float = 0.0
    jitter_seconds: float = 0.0
    bandwidth_bytes_per_second: int | None = None
    stalled: bool = False  # half-open: nothing is forwarded this way until the stall is lifted


@dataclass(frozen=True)
class Faults:
    """Every fault in force, as one immutable snapshot (swapped whole under the proxy's lock)."""

    up: PathFaults = field(default_factory=PathFaults)
    down: PathFaults = field(default_factory=PathFaults)
    blackhole: bool = False
    reset_new: bool = False
    refuse: bool = False

    def path(self, direction: Direction) -> PathFaults:
        return self.up if direction is Direction.UP else self.down

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProxyStats:
    """Counters since the proxy started."""

    connections_accepted: int = 0
    connections_open: int = 0
    bytes_up: int = 0  # handed to the upstream's socket
    bytes_down: int = 0  # handed to clients' sockets
    bytes_blackholed: int = 0
    resets: int = 0


class _Connection:
    """One proxied connection: the client's streams and, unless blackholed, the upstream's."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def writer(self, direction: Direction) -> asyncio.StreamWriter | None:
        return self.upstream if direction is Direction.UP else self.client

    def reset(self) -> None:
        """RST both ends: linger 0 makes close() drop the socket without a FIN."""
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.close()

    def close(self) -> None:
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class FaultProxy:
    """The proxy; see the module docstring for what each fault does."""

    def __init__(
        self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self._port = listen_port
        self._lock = threading.Lock()
        self._faults = Faults()
        self._stats = ProxyStats()
        self._rng = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    # -- life cycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self._port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self._port}"

    def start(self) -> FaultProxy:
        """Start the loop thread and listen; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # handed to start(), which raises it
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-proxy-{self.upstream_port}", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError("the fault proxy did not start")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then stop the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(START_TIMEOUT_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_SECONDS)
        self._thread = self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults (thread-safe) --------------------------------------------------------

    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def stats(self) -> ProxyStats:
        with self._lock:
            return replace(self._stats)

    def _paths_update(self, direction: Direction, **changes: Any) -> None:
        with self._lock:
            faults = self._faults
            for one in direction.covers():
                attr = "up" if one is Direction.UP else "down"
                faults = replace(faults, **{attr: replace(getattr(faults, attr), **changes)})
            self._faults = faults

    def set_latency(self, seconds: float, *, jitter: float = 0.0, direction: Direction = Direction.BOTH) -> None:
        if seconds < 0 or jitter < 0:
            raise ValueError("latency and jitter are durations (>= 0 seconds)")
        self._paths_update(direction, latency_seconds=float(seconds), jitter_seconds=float(jitter))

    def set_bandwidth(self, bytes_per_second: int | None, *, direction: Direction = Direction.BOTH) -> None:
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bandwidth is a positive number of bytes per second (None lifts the cap)")
        self._paths_update(direction, bandwidth_bytes_per_second=bytes_per_second)

    def stall(self, direction: Direction, stalled: bool = True) -> None:
        """Half-open: stop (or resume) forwarding ``direction`` without closing anything."""
        self._paths_update(direction, stalled=stalled)

    def set_blackhole(self, on: bool = True) -> None:
        with self._lock:
            self._faults = replace(self._faults, blackhole=on)

    def resetting(self, on: bool = True) -> None:
        """Reset every new connection as soon as it is accepted."""
        with self._lock:
            self._faults = replace(self._faults, reset_new=on)

    def reset_connections(self) -> int:
        """Send a RST on every open connection now; returns how many were reset."""
        return int(self._on_loop(self._reset_all()))

    def refuse(self, on: bool = True) -> None:
        """Stop (or resume) listening: new connections get ECONNREFUSED."""
        with self._lock:
            self._faults = replace(self._faults, refuse=on)
        self._on_loop(self._listen() if not on else self._unlisten())

    def heal(self) -> None:
        """Clear every fault; stalled data flows again and a refused port listens again."""
        was_refusing = self.faults().refuse
        with self._lock:
            self._faults = Faults()
        if was_refusing:
            self._on_loop(self._listen())

    def configure(self, **changes: Any) -> Faults:
        """Set faults from plain values (the CLI's and control endpoint's entry point).

        Keys: ``latency_ms``, ``jitter_ms``, ``bandwidth`` (bytes/s, 0 lifts it), ``direction``
        (up / down / both, for the three before and ``stall``), ``stall`` (true/false),
        ``blackhole``, ``reset_new``, ``refuse`` (true/false), ``reset`` (true: reset open
        connections now), ``heal`` (true: clear everything first).
        """
        unknown = set(changes) - {
            "latency_ms", "jitter_ms", "bandwidth", "direction", "stall",
            "blackhole", "reset_new", "refuse", "reset", "heal",
        }  # fmt: skip
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        direction = Direction(str(changes.get("direction", "both")))
        if changes.get("heal"):
            self.heal()
        if "latency_ms" in changes or "jitter_ms" in changes:
            current = self.faults().path(Direction.UP if direction is Direction.BOTH else direction)
            latency = float(changes.get("latency_ms", current.latency_seconds * 1000)) / 1000
            jitter = float(changes.get("jitter_ms", current.jitter_seconds * 1000)) / 1000
            self.set_latency(latency, jitter=jitter, direction=direction)
        if "bandwidth" in changes:
            self.set_bandwidth(int(changes["bandwidth"]) or None, direction=direction)
        if "stall" in changes:
            self.stall(direction, bool(changes["stall"]))
        if "blackhole" in changes:
            self.set_blackhole(bool(changes["blackhole"]))
        if "reset_new" in changes:
            self.resetting(bool(changes["reset_new"]))
        if "refuse" in changes and bool(changes["refuse"]) != self.faults().refuse:
            self.refuse(bool(changes["refuse"]))
        if changes.get("reset"):
            self.reset_connections()
        return self.faults()

    # -- the loop side -----------------------------------------------------------------

    def _on_loop(self, coro: Any) -> Any:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(START_TIMEOUT_SECONDS)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self._port, reuse_address=True, limit=CHUNK_BYTES
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stops listening; open connections are ours and carry on

    async def _shutdown(self) -> None:
        await self._unlisten()
        for conn in list(self._connections):
            conn.close()
        self._connections.clear()
        # Every pipe and handler ends here, so none is left pending when the loop stops.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _reset_all(self) -> int:
        connections = list(self._connections)
        for conn in connections:
            conn.reset()
        self._connections.difference_update(connections)
        with self._lock:
            self._stats.resets += len(connections)
            self._stats.connections_open = len(self._connections)
        return len(connections)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at stop(): end quietly (asyncio's stream callback logs a cancelled handler as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer)
        faults = self.faults()
        self._count(connections_accepted=1)
        if faults.reset_new:
            conn.reset()
            self._count(resets=1)
            return
        self._connections.add(conn)
        self._count(connections_open=1)
        try:
            if faults.blackhole:
                await self._swallow(reader)
                return
            try:
                up_reader, conn.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port, limit=CHUNK_BYTES
                )
            except OSError:
                # The upstream refused: so does the proxy, with a RST rather than a clean close.
                conn.reset()
                return
            conn.tasks = [
                asyncio.create_task(self._pipe(conn, reader, Direction.UP)),
                asyncio.create_task(self._pipe(conn, up_reader, Direction.DOWN)),
            ]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            conn.close()
            if conn in self._connections:
                self._connections.discard(conn)
                self._count(connections_open=-1)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Blackhole a whole connection: read until the client gives up, answer nothing."""
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK_BYTES):
                self._count(bytes_blackholed=len(data))

    async def _pipe(self, conn: _Connection, reader: asyncio.StreamReader, direction: Direction) -> None:
        """Read one direction into a queue of (due time, bytes); a sender delivers them in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(conn, queue, direction))
        conn.tasks.append(sender)
        last_due = 0.0
        try:
            while True:
                try:
                    data = await reader.read(CHUNK_BYTES)
                except OSError:
                    data = b""
                if not data:
                    break
                faults = self.faults()
                if faults.blackhole:
                    self._count(bytes_blackholed=len(data))
                    continue
                path = faults.path(direction)
                delay = path.latency_seconds + (self._rng.uniform(0, path.jitter_seconds) if path.jitter_seconds else 0)
                # Never before the chunk ahead of it: jitter must not reorder a byte stream.
                last_due = max(last_due, time.monotonic() + delay)
                queue.put_nowait((last_due, data))
        finally:
            queue.put_nowait((0.0, b""))  # end of stream: the sender half-closes after the rest
        await sender

    async def _send(self, conn: _Connection, queue: asyncio.Queue[tuple[float, bytes]], direction: Direction) -> None:
        writer = conn.writer(direction)
        if writer is None:
            return
        next_free = time.monotonic()  # bandwidth pacing: when the link may send again
        while True:
            due, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof() and not conn.closed:
                        writer.write_eof()  # pass the FIN on: the other side may still answer
                return
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            for piece in self._pieces(data, self.faults().path(direction).bandwidth_bytes_per_second):
                path = self.faults().path(direction)
                while path.stalled or self.faults().blackhole:
                    await asyncio.sleep(0.01)
                    path = self.faults().path(direction)
                if path.bandwidth_bytes_per_second:
                    now = time.monotonic()
                    if next_free > now:
                        await asyncio.sleep(next_free - now)
                    next_free = max(now, next_free) + len(piece) / path.bandwidth_bytes_per_second
                if conn.closed:
                    return
                # Counted before the write, so whoever receives the bytes already sees them counted.
                self._count(**{"bytes_up" if direction is Direction.UP else "bytes_down": len(piece)})
                try:
                    writer.write(piece)
                    await writer.drain()
                except (OSError, RuntimeError):
                    conn.close()  # the other end went away: so does this connection
                    return

    @staticmethod
    def _pieces(data: bytes, bytes_per_second: int | None) -> Iterator[bytes]:
        if not bytes_per_second:
            yield data
            return
        size = max(1, bytes_per_second // PACING_SLICES_PER_SECOND)
        for start in range(0, len(data), size):
            yield data[start : start + size]
