"""RFC 8705 certificate-bound tokens: read the client certificate forwarded by the TLS proxy.

The proxy (deploy/nginx/) verifies the client certificate against the
carrier CA and forwards it URL-encoded in a header. The header is believed
only when the connection comes from a configured proxy address; from anyone
else it is ignored, as if no certificate had been presented.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from django.conf import settings

from missions.partner.certificates import certificate_thumbprint
from missions.partner.certificates import x5t_s256 as x5t_s256  # re-exported for the API's callers
from tms_console.client_address import from_trusted_proxy


def presented_certificate(meta: Mapping[str, Any]) -> x509.Certificate | None:
    """The verified client certificate forwarded by a trusted proxy, else None."""
    if not from_trusted_proxy(str(meta.get("REMOTE_ADDR", ""))):
        return None
    verify_header = settings.PARTNER_CLIENT_VERIFY_HEADER
    # Empty: the proxy forwards only certificates it verified (a load balancer in mTLS verify mode).
    if verify_header and str(meta.get(verify_header, "")) != "SUCCESS":
        return None
    raw = str(meta.get(settings.PARTNER_CLIENT_CERT_HEADER, "") or "")
    if not raw:
        return None
    try:
        return x509.load_pem_x509_certificate(unquote(raw).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def presented_thumbprint(meta: Mapping[str, Any]) -> str | None:
    """Thumbprint of the verified client certificate forwarded by a trusted proxy, else None."""
    certificate = presented_certificate(meta)
    return None if certificate is None else certificate_thumbprint(certificate)
