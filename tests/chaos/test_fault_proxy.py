"""The fault proxy itself, on real sockets in front of an echo server.

Timings are asserted as lower bounds only (a fault adds at least this much);
a loaded machine makes everything slower, never faster.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest

from missions.simulators.faultproxy import Direction, FaultProxy, Faults
from tests.chaos.proxy import EchoServer, ProxyFactory

# How long a client waits before deciding nothing is coming (the faults under test never answer).
QUIET_SECONDS = 0.4
# Generous: what a healthy path must manage even on a loaded 2-core machine.
PATIENT_SECONDS = 10.0


def _connect(proxy: FaultProxy, *, timeout: float = PATIENT_SECONDS) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            raise ConnectionError(f"closed after {len(received)} of {size} bytes")
        received += chunk
    return bytes(received)


def _round_trip(proxy: FaultProxy, payload: bytes = b"ping") -> tuple[bytes, float]:
    with _connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        answer = _receive_exactly(sock, len(payload))
        return answer, time.monotonic() - started


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "still not true after PATIENT_SECONDS"
        time.sleep(0.02)


@pytest.fixture
def proxy(echo_server: EchoServer, fault_proxy: ProxyFactory) -> FaultProxy:
    return fault_proxy("127.0.0.1", echo_server.port)


def test_forwards_both_ways_and_counts(proxy: FaultProxy, echo_server: EchoServer) -> None:
    answer, _ = _round_trip(proxy, b"hello through the proxy")

    assert answer == b"hello through the proxy"
    stats = proxy.stats()
    assert stats.connections_accepted == 1 and echo_server.connections == 1
    assert stats.bytes_up == stats.bytes_down == len(b"hello through the proxy")
    assert stats.resets == 0 and stats.bytes_blackholed == 0


def test_latency_is_added_per_direction(proxy: FaultProxy) -> None:
    proxy.set_latency(0.3, direction=Direction.UP)
    answer, elapsed = _round_trip(proxy)
    assert answer == b"ping" and elapsed >= 0.3

    proxy.set_latency(0.25, jitter=0.1, direction=Direction.BOTH)
    answer, elapsed = _round_trip(proxy)
    assert answer == b"ping" and elapsed >= 0.5


def test_jitter_keeps_the_byte_stream_in_order(proxy: FaultProxy) -> None:
    proxy.set_latency(0.0, jitter=0.05)
    payload = bytes(range(256)) * 200
    with _connect(proxy) as sock:
        for start in range(0, len(payload), 512):
            sock.sendall(payload[start : start + 512])
        assert _receive_exactly(sock, len(payload)) == payload


def test_bandwidth_cap_is_honoured(proxy: FaultProxy) -> None:
    bytes_per_second = 200_000
    proxy.set_bandwidth(bytes_per_second, direction=Direction.DOWN)
    payload = b"x" * 120_000

    answer, elapsed = _round_trip(proxy, payload)

    assert answer == payload
    # The first pacing slice leaves at once; the rest at the cap at most.
    slice_bytes = bytes_per_second // 20
    assert elapsed >= (len(payload) - slice_bytes) / bytes_per_second * 0.9


def test_blackhole_makes_a_client_time_out(proxy: FaultProxy, echo_server: EchoServer) -> None:
    proxy.set_blackhole()
    with _connect(proxy, timeout=QUIET_SECONDS) as sock:
        sock.sendall(b"anyone there?")
        with pytest.raises(TimeoutError):
            sock.recv(100)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{proxy.url}/health", timeout=QUIET_SECONDS)

    assert echo_server.connections == 0  # nothing reached the upstream
    stats = proxy.stats()
    assert stats.connections_accepted == 2 and stats.bytes_blackholed > 0 and stats.bytes_up == 0


def test_blackhole_swallows_an_open_connection_until_healed(proxy: FaultProxy) -> None:
    with _connect(proxy, timeout=QUIET_SECONDS) as sock:
        sock.sendall(b"before")
        assert _receive_exactly(sock, 6) == b"before"
        proxy.set_blackhole()
        sock.sendall(b"during")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        proxy.heal()
        sock.sendall(b"after")
        assert _receive_exactly(sock, 5) == b"after"


def test_reset_gives_the_client_a_connection_reset(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        sock.sendall(b"ping")
        assert _receive_exactly(sock, 4) == b"ping"
        assert proxy.reset_connections() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    assert proxy.stats().resets == 1


def test_resetting_new_connections(proxy: FaultProxy) -> None:
    proxy.resetting()
    # On loopback the RST may beat connect() back to the caller: either call sees the reset.
    with pytest.raises(ConnectionResetError), _connect(proxy) as sock:
        sock.recv(100)
    with pytest.raises((httpx.ConnectError, httpx.ReadError), match="reset"):  # what an HTTP client sees
        httpx.get(f"{proxy.url}/health", timeout=PATIENT_SECONDS)
    assert proxy.stats().resets == 2


def test_half_open_holds_one_direction_without_closing(proxy: FaultProxy, echo_server: EchoServer) -> None:
    with _connect(proxy, timeout=QUIET_SECONDS) as sock:
        proxy.stall(Direction.DOWN)
        sock.sendall(b"ping")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        _eventually(lambda: echo_server.bytes_received == 4)  # it went up; the answer is held on the way down

        proxy.stall(Direction.DOWN, False)
        proxy.stall(Direction.UP)
        assert _receive_exactly(sock, 4) == b"ping"  # the held answer, on the same connection
        sock.sendall(b"pong")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        assert echo_server.bytes_received == 4

        proxy.heal()
        sock.settimeout(PATIENT_SECONDS)
        assert _receive_exactly(sock, 4) == b"pong"
    assert proxy.stats().connections_accepted == 1


def test_refused_connections_and_the_same_port_after_heal(proxy: FaultProxy) -> None:
    port = proxy.port
    with _connect(proxy) as open_before:
        open_before.sendall(b"first")
        assert _receive_exactly(open_before, 5) == b"first"  # accepted and piped before the refusal
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=PATIENT_SECONDS)
        # A connection made before carries on.
        open_before.sendall(b"still")
        assert _receive_exactly(open_before, 5) == b"still"

    proxy.heal()
    assert proxy.port == port
    assert _round_trip(proxy)[0] == b"ping"


def test_heal_clears_every_fault(proxy: FaultProxy) -> None:
    proxy.set_latency(5.0)
    proxy.set_bandwidth(10)
    proxy.set_blackhole()
    proxy.resetting()
    proxy.stall(Direction.UP)

    proxy.heal()

    assert proxy.faults() == Faults()
    answer, _ = _round_trip(proxy, b"x" * 5000)
    assert answer == b"x" * 5000


def test_configure_takes_plain_values_and_refuses_unknown_ones(proxy: FaultProxy) -> None:
    faults = proxy.configure(latency_ms=200, jitter_ms=10, direction="down", bandwidth=50_000)
    assert faults.down.latency_seconds == 0.2 and faults.down.jitter_seconds == 0.01
    assert faults.down.bandwidth_bytes_per_second == 50_000 and faults.up.latency_seconds == 0.0
    assert proxy.configure(heal=True, blackhole=True) == Faults(blackhole=True)
    with pytest.raises(ValueError, match="explode"):
        proxy.configure(explode=True)
    with pytest.raises(ValueError):
        proxy.set_latency(-1)


def test_stop_closes_the_port() -> None:
    echo = EchoServer()
    try:
        proxy = FaultProxy("127.0.0.1", echo.port).start()
        port = proxy.port
        assert _round_trip(proxy)[0] == b"ping"
        proxy.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=PATIENT_SECONDS)
    finally:
        echo.stop()
