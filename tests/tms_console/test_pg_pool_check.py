"""The pool's hand-out check (``tms_console.postgresql``): no round trip for a live idle connection,
and a connection the server ended while it sat in the pool is replaced (PostgreSQL, real server)."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from tests.conftest import require_service
from tms_console.postgresql.base import DatabaseWrapper, connection_alive


@pytest.fixture
def conninfo() -> str:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in params.items() if isinstance(v, str | int)})


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The backend pid of every connection the check asked the server about."""
    asked: list[int] = []
    real = ConnectionPool.check_connection

    def counting(conn: Any) -> None:
        asked.append(conn.info.backend_pid)
        real(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counting))
    return asked


@pytest.fixture
def pool(conninfo: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(conninfo, min_size=1, max_size=1, check=connection_alive, timeout=10) as p:
        yield p


def _pid(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


def test_a_live_idle_connection_is_handed_out_without_a_round_trip(
    pool: ConnectionPool, round_trips: list[int]
) -> None:
    first = _pid(pool)
    for _ in range(5):
        assert _pid(pool) == first  # the same connection, every time
    assert round_trips == []


def test_a_connection_the_server_ended_in_the_pool_is_replaced(
    pool: ConnectionPool, conninfo: str, round_trips: list[int]
) -> None:
    first = _pid(pool)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [first]).fetchone() == (True,)
    # The server's goodbye reaches the idle connection's socket (the pool holds the only connection).
    idle = pool._pool[0]  # the connection the pool will hand out next
    poller = select.poll()
    poller.register(idle.fileno(), select.POLLIN)
    deadline = time.monotonic() + 10
    while not poller.poll(50):
        assert time.monotonic() < deadline, "the terminated connection's socket never became readable"

    second = _pid(pool)  # no error reaches the caller: the pool drops the dead one and connects anew
    assert second != first
    assert round_trips == [first]  # the readable socket was asked about, and failed


def test_a_closed_connection_fails_the_check_at_once(conninfo: str, round_trips: list[int]) -> None:
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        connection_alive(conn)
    assert round_trips == []


@pytest.mark.parametrize("checks", [True, False])
def test_the_backend_gives_its_pool_the_polling_check(conninfo: str, checks: bool) -> None:
    probe = DatabaseWrapper(
        {**connection.settings_dict, "OPTIONS": {"pool": {"min_size": 1, "max_size": 1}}, "CONN_MAX_AGE": 0,
         "CONN_HEALTH_CHECKS": checks},
        alias="pool_check_probe",
    )  # fmt: skip
    try:
        assert probe.pool._check is (connection_alive if checks else None)  # the pool is never opened
    finally:
        getattr(DatabaseWrapper, "_connection_pools").pop("pool_check_probe", None)  # noqa: B009  (not in the stubs)
