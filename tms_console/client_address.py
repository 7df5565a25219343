"""The address a request came from, for limits, the guard on guessing and the logs.

``X-Forwarded-For`` is believed only when the socket peer (``REMOTE_ADDR``) is
one of ``PARTNER_TRUSTED_PROXIES``, the same setting that lets the edge pass
client certificates (``missions.partner.api.mtls``). From anyone else the
header is ignored: a client that could name its own address could reset its
own budget with every request. Behind the edge, the client is the rightmost
address in the header that is not itself a trusted proxy (each proxy appends
the peer it saw; what is left of it was written by the client and proves
nothing).

Limits are kept per *partition* of an address: the address itself for IPv4,
its /64 network for IPv6, since one host is usually given a whole /64 and could
otherwise pick a fresh address for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # a typo in the setting trusts nothing rather than failing every request
    return tuple(networks)


def _parse(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:51234"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None) -> bool:
    if address is None:
        return False
    return any(address in network for network in _networks(tuple(settings.PARTNER_TRUSTED_PROXIES)))


def from_trusted_proxy(remote_addr: str) -> bool:
    """Whether the socket peer is one of ``PARTNER_TRUSTED_PROXIES`` (the TLS edge)."""
    return _trusted(_parse(remote_addr))


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address: ``REMOTE_ADDR``, or the edge's ``X-Forwarded-For`` when the peer is the edge."""
    peer_raw = str(meta.get("REMOTE_ADDR") or "")
    peer = _parse(peer_raw)
    if not _trusted(peer):
        return str(peer) if peer is not None else peer_raw
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # a garbled entry: nothing to its left can be trusted either
        client = address
        if not _trusted(address):
            break
    return str(client)


def address_partition(address: str) -> str:
    """The key limits use for an address: itself (IPv4), or its /64 network (IPv6)."""
    parsed = _parse(address)
    if parsed is None:
        return address[:64] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
