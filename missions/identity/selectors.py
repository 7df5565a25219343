"""Reads for vehicle identity: the trust registry the SVID checks use, and the console page's rows.

The registry (every trust domain and bundle certificate) is small and read on
every telemetry request of an SVID carrier, so each process keeps it for
``REGISTRY_TTL_SECONDS``: a bundle change takes effect everywhere within that
time, and at once in the process that made it (``trust_registry_forget``).
"""

from __future__ import annotations

import threading
import time

from cryptography import x509
from django.db.models import QuerySet

from missions.identity.svid import TrustRegistry
from missions.models.identity import CarrierTrustDomain, TrustBundleCertificate

REGISTRY_TTL_SECONDS = 5.0

_lock = threading.Lock()
_cached: tuple[float, TrustRegistry] | None = None


def trust_registry_load() -> TrustRegistry:
    """Two queries: the trust domains, then every bundle certificate (parsed once)."""
    registry = TrustRegistry()
    for carrier_id, name, required in CarrierTrustDomain.objects.values_list("carrier_id", "name", "svid_required"):
        registry.domains[name] = carrier_id
        registry.carriers[carrier_id] = (name, required)
    for carrier_id, pem, retired_at in TrustBundleCertificate.objects.values_list("carrier_id", "pem", "retired_at"):
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        (registry.active if retired_at is None else registry.retired).setdefault(carrier_id, []).append(certificate)
    return registry


def trust_registry() -> TrustRegistry:
    """This process's copy of the registry, at most ``REGISTRY_TTL_SECONDS`` old."""
    global _cached
    cached = _cached
    if cached is not None and time.monotonic() - cached[0] < REGISTRY_TTL_SECONDS:
        return cached[1]
    registry = trust_registry_load()
    with _lock:
        _cached = (time.monotonic(), registry)
    return registry


def trust_registry_forget() -> None:
    """Drop this process's copy (after a change, and in tests)."""
    global _cached
    with _lock:
        _cached = None


def carrier_trust_domain(carrier_id: int) -> CarrierTrustDomain | None:
    return CarrierTrustDomain.objects.filter(carrier_id=carrier_id).first()


def carrier_bundle(carrier_id: int) -> QuerySet[TrustBundleCertificate]:
    """The carrier's bundle certificates, active ones first, newest first."""
    return TrustBundleCertificate.objects.filter(carrier_id=carrier_id).order_by("-retired_at", "-added_at", "-id")
