"""Network faults on real sockets for chaos tests: a fault proxy in front of any upstream, and an echo server.

``fault_proxy(upstream_host, upstream_port)`` (the fixture of the same name in
``tests/chaos/conftest.py``) starts a ``FaultProxy`` on a free loopback port and
stops it after the test; point the client (a carrier's ``api_base_url``, a
broker URL) at ``proxy.url`` / ``proxy.port`` and set faults while it runs.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator

import pytest

from missions.simulators.faultproxy import FaultProxy

ProxyFactory = Callable[[str, int], FaultProxy]


class EchoServer:
    """A TCP server on a free loopback port that sends every byte back; counts connections and bytes."""

    def __init__(self) -> None:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with owner.lock:
                    owner.connections += 1
                sock: socket.socket = self.request
                try:
                    while data := sock.recv(65536):
                        with owner.lock:
                            owner.bytes_received += len(data)
                        sock.sendall(data)
                except OSError:
                    pass

        self.lock = threading.Lock()
        self.connections = 0
        self.bytes_received = 0
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="echo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy() -> Iterator[ProxyFactory]:
    """Start fault proxies in front of given upstreams; every one is stopped after the test."""
    started: list[FaultProxy] = []

    def _make(upstream_host: str, upstream_port: int) -> FaultProxy:
        proxy = FaultProxy(upstream_host, upstream_port).start()
        started.append(proxy)
        return proxy

    yield _make
    for proxy in started:
        proxy.stop()
