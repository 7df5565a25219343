"""Fixtures for chaos tests: a fault proxy on real sockets (tests/chaos/proxy.py)."""

from tests.chaos.proxy import echo_server, fault_proxy

__all__ = ["echo_server", "fault_proxy"]
