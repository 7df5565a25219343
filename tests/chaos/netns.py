"""A network partition between this process and a server in a Linux network namespace of its own.

``Partition`` creates a namespace and a veth pair (one end here, one in the
namespace, a /30 between them), runs processes inside it (``ip netns exec``)
and cuts the link (``ip link set <far end> down``) and restores it. Packets
are then simply lost, as in a real partition: no RST, no FIN, no ICMP to
the far side; each end only finds out through its own timeouts.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2; ``partition_or_skip``
skips the test with the reason otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Sequence

import pytest

IP = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)


class Partition:
    def __init__(self) -> None:
        assert IP is not None
        self.ip = IP
        tag = uuid.uuid4().hex[:6]
        self.namespace = f"tms-chaos-{tag}"
        self.host_end, self.far_end = f"tmsc{tag}h", f"tmsc{tag}n"  # at most 15 characters
        net = random.SystemRandom().randrange(0, 256)
        self.host_address, self.far_address = f"10.254.{net}.1", f"10.254.{net}.2"
        self._created = False

    def _run(self, *argv: str) -> None:
        subprocess.run([self.ip, *argv], check=True, capture_output=True, text=True, timeout=30)

    def create(self) -> None:
        self._run("netns", "add", self.namespace)
        self._created = True
        self._run("link", "add", self.host_end, "type", "veth", "peer", "name", self.far_end)
        self._run("link", "set", self.far_end, "netns", self.namespace)
        self._run("addr", "add", f"{self.host_address}/30", "dev", self.host_end)
        self._run("link", "set", self.host_end, "up")
        self._run("-n", self.namespace, "addr", "add", f"{self.far_address}/30", "dev", self.far_end)
        self._run("-n", self.namespace, "link", "set", self.far_end, "up")
        self._run("-n", self.namespace, "link", "set", "lo", "up")

    def inside(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as a command line that runs inside the namespace."""
        return [self.ip, "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        # The far end goes down, so the host end loses its carrier but keeps its route (linkdown):
        # packets to the namespace are dropped there. Taking the host end down instead would remove
        # that route, and the packets would leave by the default route (a sandbox's egress proxy may
        # even answer them).
        self._run("-n", self.namespace, "link", "set", self.far_end, "down")

    def restore(self) -> None:
        self._run("-n", self.namespace, "link", "set", self.far_end, "up")

    def remove(self) -> None:
        if not self._created:
            return
        # Deleting the namespace deletes its veth end, and with it the pair.
        subprocess.run([self.ip, "netns", "del", self.namespace], capture_output=True, timeout=30)
        subprocess.run([self.ip, "link", "del", self.host_end], capture_output=True, timeout=30)
        self._created = False


def partition_or_skip() -> Partition:
    """A created ``Partition``, or the test skipped with why it cannot have one here."""
    if IP is None:
        pytest.skip("iproute2 (`ip`) is not installed: no network namespaces to partition")
    if os.geteuid() != 0:
        pytest.skip("network namespaces and veth pairs need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
    partition = Partition()
    try:
        partition.create()
    except subprocess.CalledProcessError as exc:
        partition.remove()
        pytest.skip(f"cannot create a network namespace here: {' '.join(exc.cmd)}: {exc.stderr.strip()}")
    return partition
