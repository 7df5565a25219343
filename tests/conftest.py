"""Shared personas and helpers for every test.

Personas: dispatcher, on-call, admin, read-only and SLA-manager console users
(each with a confirmed TOTP device), carrier A and carrier B, and an outsider
(a user with no role).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.events import Actor
from missions.models import Carrier
from missions.telemetry.ingest import carrier_caches_clear
from tests.factories import CarrierFactory
from tests.servers import remove_directory, sqlite_test_database_to_file
from tms_console.ratelimit import limiter, store_url
from tms_console.roles import ADMIN, DISPATCHER, ON_CALL, READ_ONLY, SLA_MANAGER, roles_sync

pytest_plugins = ["tests.tracing"]

REQUIRE_SERVICES = os.environ.get("TMS_REQUIRE_SERVICES") == "1"
_sqlite_dir: Path | None = None


def require_service(name: str, available: bool) -> None:
    """Skip a service-backed test locally; fail it when CI demands the services."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} is required (TMS_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{name} not configured")


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Every test starts with empty rate-limit counters.

    Redis keys outlive a test (database rows do not: they are rolled back or
    flushed with the test's data), and a partner client's id comes back in
    the next test's fresh tables.
    """
    limiter().clear(shared=bool(store_url()))
    yield


@pytest.fixture(autouse=True)
def _fresh_mission_caches() -> Iterator[None]:
    """Every test starts with no cached missions: ids come back in the next test's fresh tables."""
    carrier_caches_clear()
    yield


def make_user(username: str, role: str | None, *, staff: bool = False) -> User:
    roles_sync()
    user = User.objects.create_user(username=username, password="correct-horse-battery-staple", is_staff=staff)
    if role:
        user.groups.add(Group.objects.get(name=role))
    TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    return user


def verified_client(user: User) -> Client:
    """A test client logged in with password and a verified one-time code."""
    client = Client()
    client.force_login(user)
    device = TOTPDevice.objects.get(user=user)
    session = client.session
    session["otp_device_id"] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def dispatcher(db: Any) -> User:
    return make_user("dispatcher", DISPATCHER)


@pytest.fixture
def oncall(db: Any) -> User:
    return make_user("oncall", ON_CALL)


@pytest.fixture
def admin_user(db: Any) -> User:
    user = make_user("admin", ADMIN, staff=True)
    user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def readonly(db: Any) -> User:
    return make_user("viewer", READ_ONLY)


@pytest.fixture
def sla_manager(db: Any) -> User:
    return make_user("slamanager", SLA_MANAGER)


@pytest.fixture
def outsider(db: Any) -> User:
    return make_user("outsider", None)


@pytest.fixture
def carrier_a(db: Any) -> Carrier:
    return CarrierFactory(name="Carrier A", slug="carrier-a")


@pytest.fixture
def carrier_b(db: Any) -> Carrier:
    return CarrierFactory(name="Carrier B", slug="carrier-b")


@pytest.fixture
def system_actor() -> Actor:
    return Actor.system("test")


# --- A shareable SQLite test database ----------------------------------------------------------


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move the SQLite test database to a file when a test that shares it with another process will run.

    Browser tests and ``live`` tests (a server process reads it) and tests marked
    ``shared_database`` (threads or processes writing at once: an in-memory SQLite database is
    one connection's, and its shared cache fails concurrent writers with "table is locked").
    """
    global _sqlite_dir
    markers = ("browser", "live", "server_process", "shared_database")
    if not any(item.get_closest_marker(m) for item in session.items for m in markers):
        return
    if _sqlite_dir is None:
        # Settings only: the connection objects are left for the tests to create.
        _sqlite_dir = sqlite_test_database_to_file()


def pytest_sessionfinish(session: pytest.Session) -> None:
    remove_directory(_sqlite_dir)


@pytest.fixture(autouse=True)
def _no_ids_left_behind() -> Iterator[None]:
    """No test, nor the code it drives, leaves a request or correlation id in the context.

    One left behind would be stamped on every later log line and task message
    of the thread, and would show in another test as a stray id.
    """
    from tms_console.logging import correlation_id_var, request_id_var

    yield
    left = (request_id_var.get(), correlation_id_var.get())
    request_id_var.set(None)
    correlation_id_var.set(None)
    assert left == (None, None), f"request and correlation ids left in the context: {left}"
