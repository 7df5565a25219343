"""Shared personas and helpers for every test.

Personas: dispatcher, on-call, admin, read-only and SLA-manager console users
(each with a confirmed TOTP device), carrier A and carrier B, and an outsider
(a user with no role).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.events import Actor
from missions.models import Carrier
from tests.factories import CarrierFactory
from tests.server_process import sqlite_directory_remove, sqlite_test_database_to_file
from tms_console.roles import ADMIN, DISPATCHER, ON_CALL, READ_ONLY, SLA_MANAGER, roles_sync

REQUIRE_SERVICES = os.environ.get("TMS_REQUIRE_SERVICES") == "1"


def require_service(name: str, available: bool) -> None:
    """Skip a service-backed test locally; fail it when CI demands the services."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} is required (TMS_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{name} not configured")


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


# --- Tests that serve the project from a process of their own -----------------------------------

_server_process_sqlite_dir: Path | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """A server process cannot open an in-memory SQLite database: use a file when such a test runs."""
    global _server_process_sqlite_dir
    if _server_process_sqlite_dir is None and any(item.get_closest_marker("server_process") for item in session.items):
        _server_process_sqlite_dir = sqlite_test_database_to_file()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Django deletes the database file; WAL side files and the directory are ours.
    sqlite_directory_remove(_server_process_sqlite_dir)
