"""URLs from outside (a carrier's sandbox) are checked before the console calls them, and the call is bounded."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tms_console.egress import EgressRefused, egress_check, guarded_get

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture(autouse=True)
def _console(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["console.example", ".tms.example", "127.0.0.1"]
    settings.PUBLIC_BASE_URL = "https://console.example"
    settings.PARTNER_BASE_URL = "http://127.0.0.1:8001"
    settings.EGRESS_ALLOWED_NETWORKS = []
    settings.EGRESS_ALLOW_HTTP = False


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "Enter a URL"),
        ("ftp://93.184.216.34/tenders", "Only https://"),
        ("file:///etc/passwd", "Only https://"),
        ("gopher://93.184.216.34:70/", "Only https://"),
        ("//93.184.216.34/", "without a scheme"),
        ("http://93.184.216.34/", "Only https://"),
        ("https://carrier:secret@93.184.216.34/", "credentials"),
        ("https://93.184.216.34:99999/", "cannot be read"),
        ("https://93.184.216.34/a b", "spaces or control characters"),
        ("https://127.0.0.1/", "loopback"),
        ("https://127.1.2.3:8443/", "loopback"),
        ("https://localhost/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://2130706433/", "loopback"),  # 127.0.0.1 written as one number
        ("https://0x7f000001/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://10.0.0.5/", "private"),
        ("https://172.16.9.9/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://[fd00::5]/", "private"),
        ("https://100.64.1.1/", "carrier-grade NAT"),
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://console.example/api", "this console itself"),
        ("https://eu.tms.example/api", "this console itself"),
        ("https://no-such-host.invalid/", "cannot be resolved"),
    ],
)
def test_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused, match=reason):
        egress_check(url)


def test_a_public_address_passes_and_keeps_what_was_checked() -> None:
    target = egress_check("https://93.184.216.34:8443/sandbox?x=1#frag")

    assert (target.scheme, target.host, target.port) == ("https", "93.184.216.34", 8443)
    assert target.addresses == ("93.184.216.34",)
    assert target.url == "https://93.184.216.34:8443/sandbox?x=1"


def test_the_consoles_own_partner_port_is_refused_even_where_its_network_is_allowed(settings: Any) -> None:
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EGRESS_ALLOW_HTTP = True

    with pytest.raises(EgressRefused, match="this console itself"):
        egress_check("http://127.0.0.1:8001/api/v1/tenders")
    # Another port of the same host, in a network the operator opened: the demo's carrier simulator.
    assert egress_check("http://127.0.0.1:9100/").addresses == ("127.0.0.1",)


def test_an_allowed_network_opens_only_itself(settings: Any) -> None:
    settings.EGRESS_ALLOWED_NETWORKS = ["10.20.0.0/16"]

    assert egress_check("https://10.20.3.4/").host == "10.20.3.4"
    with pytest.raises(EgressRefused, match="private"):
        egress_check("https://10.21.3.4/")


def test_a_malformed_allowed_network_stops_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import tms_console.settings as site_settings

    monkeypatch.setenv("EGRESS_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ImproperlyConfigured, match="EGRESS_ALLOWED_NETWORKS"):
        importlib.reload(site_settings)
    monkeypatch.delenv("EGRESS_ALLOWED_NETWORKS")
    importlib.reload(site_settings)


class _Sandbox(BaseHTTPRequestHandler):
    """A carrier sandbox misbehaving on request: ``/big`` (10 MB), ``/hang``, ``/redirect``, ``/ok``."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()  # no Content-Length: the size shows only while reading
            for _ in range(160):
                self.wfile.write(b"x" * 65_536)
        elif self.path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
        elif self.path == "/hang":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = f'{{"host": "{self.headers.get("Host")}"}}'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture
def sandbox(settings: Any) -> Iterator[str]:
    settings.EGRESS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EGRESS_ALLOW_HTTP = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sandbox)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_call_goes_to_the_checked_address_with_the_name_in_host(sandbox: str) -> None:
    answer = guarded_get(f"{sandbox}/ok")

    assert answer.status_code == 200
    assert answer.json() == {"host": sandbox.removeprefix("http://")}


def test_an_answer_of_gigabytes_is_cut_off_at_the_ceiling(sandbox: str) -> None:
    with pytest.raises(EgressRefused, match="larger than the 1,048,576 bytes"):
        guarded_get(f"{sandbox}/big")
    with pytest.raises(EgressRefused, match="52,428,800 bytes, more than"):
        guarded_get(f"{sandbox}/declared-big")


def test_a_sandbox_that_drips_is_given_up_at_the_deadline(sandbox: str) -> None:
    started = time.monotonic()
    with pytest.raises(EgressRefused, match="longer than 1 s"):
        guarded_get(f"{sandbox}/hang", timeout=1.0)
    assert time.monotonic() - started < 3.0


def test_a_redirect_is_the_answer_not_followed(sandbox: str) -> None:
    answer = guarded_get(f"{sandbox}/redirect")

    assert answer.status_code == 302
    assert answer.headers["location"].startswith("http://169.254.169.254/")
