"""The client's address: X-Forwarded-For only from a trusted proxy, the rightmost untrusted entry."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tms_console.client_address import address_partition, client_address, from_trusted_proxy


@pytest.fixture(autouse=True)
def _edge(settings: Any) -> None:
    settings.PARTNER_TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.10"]


def meta(remote: str, forwarded: str | None = None) -> dict[str, str]:
    found = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        found["HTTP_X_FORWARDED_FOR"] = forwarded
    return found


def test_a_direct_client_is_its_socket_peer_whatever_it_forwards() -> None:
    assert client_address(meta("203.0.113.5", "198.51.100.1")) == "203.0.113.5"
    assert client_address(meta("203.0.113.5")) == "203.0.113.5"


def test_behind_the_edge_the_client_is_the_rightmost_untrusted_entry() -> None:
    assert client_address(meta("10.1.2.3", "198.51.100.1")) == "198.51.100.1"
    # What the client wrote itself (left of the edge's entry) does not count.
    assert client_address(meta("10.1.2.3", "1.2.3.4, 198.51.100.1")) == "198.51.100.1"
    # Proxies of our own in the chain are skipped.
    assert client_address(meta("10.1.2.3", "198.51.100.1, 192.0.2.10, 10.9.9.9")) == "198.51.100.1"


def test_behind_the_edge_without_a_header_the_client_is_the_edge() -> None:
    assert client_address(meta("10.1.2.3")) == "10.1.2.3"
    assert client_address(meta("10.1.2.3", "")) == "10.1.2.3"


def test_a_garbled_entry_stops_the_walk() -> None:
    assert client_address(meta("10.1.2.3", "198.51.100.1, not-an-address")) == "10.1.2.3"
    assert client_address(meta("10.1.2.3", "not-an-address, 198.51.100.7")) == "198.51.100.7"


def test_ports_brackets_and_mapped_addresses_are_normalised() -> None:
    assert client_address(meta("10.1.2.3", "198.51.100.1:4711")) == "198.51.100.1"
    assert client_address(meta("10.1.2.3", "[2001:db8::1]:443")) == "2001:db8::1"
    assert client_address(meta("::ffff:203.0.113.9")) == "203.0.113.9"
    assert from_trusted_proxy("::ffff:10.0.0.1")


def test_no_trusted_proxy_configured_trusts_no_header(settings: Any) -> None:
    settings.PARTNER_TRUSTED_PROXIES = []
    assert client_address(meta("10.1.2.3", "198.51.100.1")) == "10.1.2.3"
    assert not from_trusted_proxy("10.1.2.3")


def test_a_typo_in_the_setting_trusts_nothing_rather_than_failing(settings: Any) -> None:
    settings.PARTNER_TRUSTED_PROXIES = ["not a network", "10.0.0.0/8"]
    assert client_address(meta("10.1.2.3", "198.51.100.1")) == "198.51.100.1"


def test_ipv6_addresses_share_their_64_bit_prefix() -> None:
    assert address_partition("2001:db8:1:2:aaaa::1") == address_partition("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_partition("2001:db8:1:3::1") != address_partition("2001:db8:1:2::1")
    assert address_partition("203.0.113.5") == "203.0.113.5"


@given(st.text(max_size=200))
def test_any_header_from_an_untrusted_peer_is_ignored(forwarded: str) -> None:
    assert client_address(meta("203.0.113.5", forwarded)) == "203.0.113.5"


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=6))
def test_from_the_edge_the_answer_is_always_an_address_of_the_chain_or_the_edge(chain: list[str]) -> None:
    found = client_address(meta("10.1.2.3", ", ".join(chain)))
    assert found in [*chain, "10.1.2.3"]
