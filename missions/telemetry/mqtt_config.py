"""Where the MQTT broker is: parsed from ``MQTT_URL`` (shared by the bridge and the fleet simulator)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    tls: bool
    username: str
    password: str
    ca_file: str
    # The client certificate and key the connection presents (mqtts:// to a broker that requires one).
    client_cert: str = ""
    client_key: str = ""


def broker_config(
    url: str,
    *,
    username: str = "",
    password: str = "",
    ca_file: str = "",
    client_cert: str = "",
    client_key: str = "",
) -> BrokerConfig:
    """Parse ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``; explicit credentials win over the URL's."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883, not {url!r}")
    tls = parsed.scheme == "mqtts"
    return BrokerConfig(
        host=parsed.hostname,
        port=parsed.port or (8883 if tls else 1883),
        tls=tls,
        username=username or unquote(parsed.username or ""),
        password=password or unquote(parsed.password or ""),
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
    )
