"""Debian's nginx running ``deploy/nginx/partner-api.conf``, with certificates made for the test.

The file in the repository is the file that runs: its ``${NAME}`` placeholders
are filled as a deployment would fill them, and a test may replace a line it
names exactly (``replace``; the line must exist, so the test breaks if the
file changes under it).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.certificates import LOOPBACK_SAN, issue_certificate, pem_pair, write_pem
from tests.servers import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PROXY_SOURCE = "127.0.0.2"  # nginx connects to the application from here
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EdgeCertificates:
    ca: str  # the carrier CA bundle, which also issued the edge's own certificate
    server: tuple[str, str]
    client: tuple[str, str]  # issued by the carrier CA
    rogue: tuple[str, str]  # issued by a CA the edge does not know


def make_certificates(directory: Path) -> EdgeCertificates:
    ca_cert, ca_key = issue_certificate("Carrier Test CA", ca=True)
    write_pem(directory / "carrier-ca", ca_cert)
    server, server_key = issue_certificate("127.0.0.1", ca_key, ca_cert.subject, san=LOOPBACK_SAN)
    write_pem(directory / "server", server, server_key)
    client, client_key = issue_certificate("vehicle-gateway", ca_key, ca_cert.subject)
    write_pem(directory / "client", client, client_key)
    rogue_ca, rogue_ca_key = issue_certificate("Rogue CA", ca=True)
    rogue, rogue_key = issue_certificate("rogue", rogue_ca_key, rogue_ca.subject)
    write_pem(directory / "rogue", rogue, rogue_key)
    return EdgeCertificates(
        ca=str(directory / "carrier-ca.crt"),
        server=pem_pair(directory, "server"),
        client=pem_pair(directory, "client"),
        rogue=pem_pair(directory, "rogue"),
    )


@dataclass
class Edge:
    port: int
    certificates: EdgeCertificates
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def tls(self, client: tuple[str, str] | None = None) -> ssl.SSLContext:
        """A client TLS context trusting the edge, presenting ``client`` (certificate, key) if given."""
        context = ssl.create_default_context(cafile=self.certificates.ca)
        if client is not None:
            context.load_cert_chain(*client)
        return context

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_edge(
    directory: Path, *, upstream: str, certificates: EdgeCertificates, replace: Mapping[str, str] | None = None
) -> Edge:
    """nginx with the repository's edge configuration in front of ``upstream`` (host:port)."""
    assert NGINX is not None
    port = free_port()
    text = (Path(settings.BASE_DIR) / "deploy" / "nginx" / "partner-api.conf").read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"the edge configuration no longer has {old!r}"
        text = text.replace(old, new)
    values = {
        "LISTEN_PORT": f"127.0.0.1:{port}",
        "SERVER_CERT": certificates.server[0],
        "SERVER_KEY": certificates.server[1],
        "CARRIER_CA_BUNDLE": certificates.ca,
        "UPSTREAM": upstream,
        "PROXY_SOURCE_ADDRESS": PROXY_SOURCE,
    }
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "partner-api.conf").write_text(text)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (directory / sub).mkdir(exist_ok=True)
    # Started as root, nginx runs its worker as "nobody", which cannot write the body buffers
    # into this test's private temporary directory.
    user = "user root;" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/partner-api.conf;
}}
""")
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    edge = Edge(port=port, certificates=certificates, process=process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited: {process.stdout.read().decode() if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return edge
        except OSError:
            time.sleep(0.05)
    edge.stop()
    pytest.fail("nginx did not listen in time")
