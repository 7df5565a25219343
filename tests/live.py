"""Live application servers for tests about production behaviour: daphne and gunicorn (``tests.servers``).

Each server is a separate process serving the test database, started with
the environment a test names and stopped afterwards. Tests that talk to one
commit their data (``django_db(transaction=True)``) and carry the ``live``
marker: on SQLite, the test database then lives in a file the server can
open (``tests/conftest.py`` moves it there).

Servers run with ``DEBUG`` and ``TMS_TESTING`` off (the production code
paths), the test settings' fast password hasher, eager Celery, and the
``PARTNER_TRUSTED_PROXIES`` a test gives; gunicorn runs two workers, so limits
must hold across processes. ``client_from`` makes an HTTP client whose
connections leave from a chosen loopback address, so a test can act as the
trusted edge (127.0.0.2) or as a direct client (127.0.0.1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.servers import AppServer as LiveApp
from tests.servers import serving

EDGE_ADDRESS = "127.0.0.2"  # the address tests use to act as the trusted proxy
SECRET_KEY = "live-test-only-" + "k" * 50
# Two workers: limits must hold across processes, not only across one process's threads.
GUNICORN_TWO_WORKERS = (
    "--workers", "2", "--worker-class", "gthread", "--threads", "8",
    # A burst warms one keep-alive connection per thread and then waits for the others: on a
    # loaded machine that takes longer than gunicorn's default 2 s keep-alive, which closed the
    # first connections before their request was sent.
    "--keep-alive", "60",
)  # fmt: skip


def live_env(kind: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The production-like settings of a live server (``extra`` over them), over ``tests.servers.server_env``.

    gunicorn's workers get one Prometheus directory (a scrape adds them up).
    """
    env = {
        # DJANGO_SETTINGS_MODULE stays the test settings: their MD5 hasher reads the test's users.
        "TMS_TESTING": "0",
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "DB_POOL": "0",
        "TMS_VAR_DIR": str(tmp / "var"),
        **extra,
    }
    if kind == "gunicorn":
        (tmp / "prometheus").mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
    return env


@contextmanager
def serve(kind: str, env: dict[str, str], log_path: Path) -> Iterator[LiveApp]:
    """Start ``kind`` with ``env`` (from ``live_env``); wait for ``/healthz``; stop it afterwards."""
    with serving(kind, log_path=log_path, env=env, gunicorn_options=GUNICORN_TWO_WORKERS) as app:
        yield app


def client_from(app: LiveApp, source: str = "127.0.0.1", **kwargs: object) -> httpx.Client:
    """An HTTP client to ``app`` whose connections leave from ``source`` (127.0.0.2 acts as the edge)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=app.url, transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]


Send = Callable[[httpx.Client, int], httpx.Response]


def burst(app: LiveApp, count: int, send: Send, *, warm: str = "/healthz", **client: Any) -> list[httpx.Response]:
    """``count`` requests at once, one connection per thread, released together by a barrier.

    Each thread first GETs ``warm`` on its connection (the burst is the requests, not the
    handshakes; the login page also gives the CSRF cookie).
    """
    barrier = threading.Barrier(count)

    def one(index: int) -> httpx.Response:
        with client_from(app, **client) as http:
            http.get(warm)
            barrier.wait(timeout=60)
            return send(http, index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def inside_one_window(window_seconds: int, margin_seconds: float = 8.0) -> None:
    """Wait, if needed, so that a short burst does not straddle two fixed windows of a limit."""
    left = window_seconds - time.time() % window_seconds
    if left < margin_seconds:
        time.sleep(left + 0.2)


def field_items(value: str) -> dict[str, dict[str, str]]:
    """A ``RateLimit`` / ``RateLimit-Policy`` field as {policy: {parameter: value}} (a list of items)."""
    items: dict[str, dict[str, str]] = {}
    for item in value.split(","):
        name, *params = item.strip().split(";")
        items[name.strip('"')] = dict(p.split("=", 1) for p in params)
    return items


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in a Prometheus text exposition (0 when absent)."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        rest = series[len(name) :]
        found = set(rest.strip("{}").split(",")) if rest.startswith("{") else set()
        if rest and not rest.startswith("{"):
            continue  # another metric whose name starts with this one
        if wanted <= found:
            return float(value)
    return 0.0
