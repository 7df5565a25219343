"""Shared personas and helpers for every test.

Personas: dispatcher, on-call, admin, read-only and SLA-manager console users
(each with a confirmed TOTP device), carrier A and carrier B, and an outsider
(a user with no role).

``app_server``: the site under daphne and under gunicorn (``tests.servers``), for
tests about HTTP behaviour; a module overrides ``app_server_env`` to give the
server process extra settings.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.events import Actor
from missions.models import Carrier
from tests.factories import CarrierFactory
from tests.servers import SERVER_KINDS, AppServer, remove_directory, sqlite_test_database_to_file, start_app_server
from tms_console.roles import ADMIN, DISPATCHER, ON_CALL, READ_ONLY, SLA_MANAGER, roles_sync

REQUIRE_SERVICES = os.environ.get("TMS_REQUIRE_SERVICES") == "1"
_shared_sqlite_dir: Path | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """A server process cannot open an in-memory SQLite database: use a file when servers will run."""
    global _shared_sqlite_dir
    if _shared_sqlite_dir is None and any("app_server" in getattr(i, "fixturenames", ()) for i in session.items):
        _shared_sqlite_dir = sqlite_test_database_to_file()


def pytest_sessionfinish(session: pytest.Session) -> None:
    remove_directory(_shared_sqlite_dir)


@pytest.fixture(scope="module")
def app_server_env() -> dict[str, str]:
    """Extra environment for the ``app_server`` processes of a module (override it in the module)."""
    return {}


@pytest.fixture(scope="module", params=SERVER_KINDS)
def app_server(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    app_server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    """daphne, then gunicorn, serving the site against the test database; one of each per module.

    The data a test makes must be committed (``django_db(transaction=True)``) for the server to see it.
    """
    kind = str(request.param)
    server = start_app_server(kind, log_path=tmp_path_factory.mktemp(kind) / "server.log", env=app_server_env)
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    server = getattr(item, "funcargs", {}).get("app_server")
    if report.failed and isinstance(server, AppServer):
        report.sections.append((f"{server.kind} log (last lines)", server.log_tail()))
    return report


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
