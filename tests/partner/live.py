"""Raw HTTP for tests about what crosses the wire (the servers themselves: ``tests.servers``).

Raw requests (chunked bodies, bodies with bytes no HTTP library would send)
go through ``raw_request``, over a plain socket.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

IO_TIMEOUT_S = 30.0  # an upper bound for a socket operation, never asserted as a timing


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    sent_body_bytes: int  # how much of the body the client had sent when the answer came


def refused_in_time(limit: int) -> int:
    """The most a client can have sent when a server refuses a body once it passes ``limit`` bytes.

    The server stops reading at the limit, but the kernel still takes what fits
    in the server's receive buffer and the client's send buffer before the
    client's next write blocks; on loopback both grow up to the TCP maxima
    (``tcp_rmem`` / ``tcp_wmem``), which depend on the machine.
    """
    slack = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        slack += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    return limit + slack


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into chunks of ``size`` bytes (the last one shorter), for ``raw_request(chunks=...)``."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Server(Protocol):
    @property
    def address(self) -> tuple[str, int]: ...


def raw_request(
    server: Server,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    chunks: Iterable[bytes] | None = None,
    tls: ssl.SSLContext | None = None,
) -> RawResponse:
    """One HTTP/1.1 request over a fresh socket (TLS with ``tls``), its body as is (``body``) or chunked (``chunks``).

    With ``chunks`` the body is sent chunk by chunk, and sending stops as soon
    as the server answers or stops reading (an early 413): ``sent_body_bytes``
    says how far the client got.
    """
    host, port = server.address
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sent = 0
    received = bytearray()
    plain = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
    sock = tls.wrap_socket(plain, server_hostname=host) if tls is not None else plain
    with sock:
        sock.sendall(head)
        if body is not None and chunks is None:
            sock.sendall(body)
            sent = len(body)
        elif chunks is not None:
            sock.setblocking(False)
            try:
                for data in [*(_chunk(c) for c in chunks if c), b"0\r\n\r\n"]:
                    view = memoryview(data)
                    while view:
                        early = _early_answer(sock)
                        if early is not None:
                            received += early
                            raise _Answered
                        try:
                            written = sock.send(view)
                        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                            select.select([sock], [sock], [], IO_TIMEOUT_S)
                            continue
                        view = view[written:]
                    sent += len(data)
            except (_Answered, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                pass  # the server answered (or hung up) before the whole body was sent
            sock.setblocking(True)
            sock.settimeout(IO_TIMEOUT_S)
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break  # the answer was read up to the reset (Linux keeps what arrived before it)
            if not data:
                break
            received += data
    return _parse_response(bytes(received), sent)


class _Answered(Exception):
    """The server's answer is readable: stop sending."""


def _early_answer(sock: socket.socket) -> bytes | None:
    """What the server has sent already (b"" if it closed), or None while it is still reading.

    Read rather than only polled: after a TLS 1.3 handshake the socket is
    readable for the session tickets alone, which are not an answer.
    """
    if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return None
    try:
        return sock.recv(65536)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except (ConnectionResetError, ssl.SSLError):
        return b""


def _parse_response(data: bytes, sent: int) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # an interim "100 Continue"
        head, _, rest = rest.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise AssertionError(f"no HTTP answer: {data[:200]!r}")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        rest = bytes(body)
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return RawResponse(status=status, headers=headers, body=rest, sent_body_bytes=sent)
