"""Calls to addresses someone outside gave us: checked before they leave, bounded while they run.

A carrier's integration staff type their sandbox's URL into the console, and
the console then calls it. Unchecked, that is a server-side request forgery:
the URL could name the console itself, the cloud's metadata service
(169.254.169.254), the database, or anything else on the private network
behind the console. Every such URL goes through ``egress_check`` first:

* only the schemes allowed (``https``; ``http`` when ``EGRESS_ALLOW_HTTP``),
  no user name or password in the URL, a port in range;
* the host is not one of the console's own names (``ALLOWED_HOSTS``,
  ``PARTNER_BASE_URL``);
* every address the name resolves to is a public one: loopback, private,
  link-local, carrier-grade NAT, multicast, reserved and unspecified
  addresses are refused, IPv4 written as one number or in hex included (the
  resolver reads them as addresses), and IPv4-mapped IPv6 is judged as the
  IPv4 it carries, unless the operator lists its network in
  ``EGRESS_ALLOWED_NETWORKS`` (a carrier sandbox in the same data centre, the
  simulator of the demo).

``guarded_get`` / ``guarded_request`` then make the call to the address that
was checked, not to a second resolution of the name (which a hostile DNS
server could answer differently), with the original name in ``Host`` and in
TLS's server name, a deadline for the whole exchange and a ceiling on the
answer's size: a sandbox that hangs or answers gigabytes costs a bounded
wait and a bounded amount of memory.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_BYTES = 1_048_576

# Shared address space (RFC 6598) is not "private" to Python's ipaddress, but is not on the internet.
_CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")


class EgressRefused(ValueError):
    """The URL may not be called; the message says why, in words for the person who typed it."""


@dataclass(frozen=True)
class EgressTarget:
    """A URL that passed the check, with the addresses it was checked at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class GuardedResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes
    elapsed_seconds: float
    # Over TLS: the server's certificate (DER) as presented in the handshake.
    peer_certificate: bytes | None = None

    def json(self) -> Any:
        import json

        return json.loads(self.content)


def allowed_networks() -> list[IPNetwork]:
    """``EGRESS_ALLOWED_NETWORKS`` as networks (settings.py has already refused a malformed one)."""
    return [ipaddress.ip_network(n, strict=False) for n in getattr(settings, "EGRESS_ALLOWED_NETWORKS", [])]


def _own_origins() -> set[tuple[str, int]]:
    """The (host, port) pairs the console and its partner API answer at."""
    found: set[tuple[str, int]] = set()
    for url in (getattr(settings, "PUBLIC_BASE_URL", ""), getattr(settings, "PARTNER_BASE_URL", "")):
        parts = urlsplit(url or "")
        if parts.hostname:
            found.add((parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)))
    return found


def _is_console_name(host: str) -> bool:
    """``host`` is one of ``ALLOWED_HOSTS`` (a leading dot stands for a domain and its subdomains)."""
    for allowed in settings.ALLOWED_HOSTS:
        name = allowed.lower().strip("[]")
        if not name or name == "*":
            continue
        if name.startswith("."):
            if host == name[1:] or host.endswith(name):
                return True
        elif host == name:
            return True
    return False


def _not_public_reason(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _not_public_reason(address.ipv4_mapped)
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CARRIER_GRADE_NAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EgressRefused(f"The host {host!r} cannot be resolved: check the name.") from exc
    found: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0])
        if text not in found:
            found.append(text)
    if not found:
        raise EgressRefused(f"The host {host!r} has no address.")
    return found


def egress_check(
    url: str, *, schemes: Iterable[str] | None = None, networks: Iterable[IPNetwork] | None = None
) -> EgressTarget:
    """Check ``url`` as described in the module's text; raise ``EgressRefused`` with the reason."""
    text = (url or "").strip()
    if not text:
        raise EgressRefused("Enter a URL.")
    if len(text) > 2048:
        raise EgressRefused("The URL is longer than 2,048 characters.")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise EgressRefused("The URL contains spaces or control characters.")
    if schemes is None:
        schemes = ("https", "http") if getattr(settings, "EGRESS_ALLOW_HTTP", False) else ("https",)
    allowed_schemes = tuple(schemes)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"The URL cannot be read: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in allowed_schemes:
        listed = " or ".join(f"{s}://" for s in allowed_schemes)
        raise EgressRefused(f"Only {listed} URLs are allowed here, not {scheme or 'a URL without a scheme'}.")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("Put credentials in the authentication settings, not in the URL.")
    host = (parts.hostname or "").lower()
    if not host:
        raise EgressRefused("The URL has no host.")
    port = port or (443 if scheme == "https" else 80)
    if (host, port) in _own_origins():
        raise EgressRefused("The URL points at this console itself.")
    networks = list(allowed_networks() if networks is None else networks)
    try:
        addresses = _resolve(host, port)
    except EgressRefused:
        if _is_console_name(host):
            raise EgressRefused("The URL points at this console itself.") from None
        raise
    opened = 0
    for text_address in addresses:
        address = ipaddress.ip_address(text_address.split("%", 1)[0])
        if any(address in network for network in networks):
            opened += 1
            continue
        reason = _not_public_reason(address)
        if reason is not None:
            raise EgressRefused(
                f"The host {host!r} resolves to {address}, {reason}; only public addresses can be called"
                " (an operator can allow a network with EGRESS_ALLOWED_NETWORKS)."
            )
    # One of the console's own names, at a port of its own or not, unless the operator opened its network.
    if opened < len(addresses) and _is_console_name(host):
        raise EgressRefused("The URL points at this console itself.")
    normalised = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
    return EgressTarget(url=normalised, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


def _pinned_url(target: EgressTarget, url: str) -> str:
    parts = urlsplit(url)
    address = target.addresses[0]
    literal = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))


def guarded_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    verify: Any = True,
    cert: Any = None,
    target: EgressTarget | None = None,
) -> GuardedResponse:
    """One call to a checked URL, at the address checked, within ``timeout`` seconds and ``max_bytes``.

    Redirects are not followed (a redirect could lead anywhere): the 3xx is the answer.
    Raises ``EgressRefused`` for a URL the check refuses, an answer larger than ``max_bytes``
    and a call that outlasts ``timeout``; ``httpx.HTTPError`` for a transport failure.
    """
    target = target or egress_check(url)
    default_port = 443 if target.scheme == "https" else 80
    name = f"[{target.host}]" if ":" in target.host else target.host
    host_header = name if target.port == default_port else f"{name}:{target.port}"
    # Uncompressed, so the ceiling counts what is kept; an answer compressed anyway is counted decoded.
    sent_headers = {"Accept-Encoding": "identity", **(headers or {}), "Host": host_header}
    started = time.monotonic()
    deadline = started + timeout
    client_timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    with httpx.Client(verify=verify, cert=cert, timeout=client_timeout, follow_redirects=False) as client:
        request = client.build_request(method, _pinned_url(target, url), headers=sent_headers, content=content)
        request.extensions["sni_hostname"] = target.host
        response = client.send(request, stream=True)
        peer_certificate = _peer_certificate(response)
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise EgressRefused(f"The answer is {int(declared):,} bytes, more than the {max_bytes:,} allowed.")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise EgressRefused(f"The answer is larger than the {max_bytes:,} bytes allowed.")
                if time.monotonic() > deadline:
                    raise EgressRefused(f"The answer took longer than {timeout:g} s.")
        finally:
            response.close()
    return GuardedResponse(
        status_code=response.status_code,
        headers=response.headers,
        content=bytes(body),
        elapsed_seconds=time.monotonic() - started,
        peer_certificate=peer_certificate,
    )


def _peer_certificate(response: httpx.Response) -> bytes | None:
    stream = response.extensions.get("network_stream")
    tls = stream.get_extra_info("ssl_object") if stream is not None else None
    return tls.getpeercert(True) if tls is not None else None  # binary_form, positional on the C object


def guarded_get(url: str, **kwargs: Any) -> GuardedResponse:
    return guarded_request("GET", url, **kwargs)
