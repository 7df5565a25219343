"""Django's PostgreSQL backend, whose connection pool checks an idle connection without asking the server.

Django's pool (``OPTIONS["pool"]``, psycopg_pool) can check each connection it
hands out, and the console wants that: a connection the server ended while it
sat in the pool (a restart, a failover, ``pg_terminate_backend``) must be
replaced, not answered with a 503. Django's check sends an empty statement and
waits for the answer: one more round trip on every request that touches the
database, which under load costs as much as the request's own statement (a
partner's ``GET /api/v1/tenders/<id>`` is two statements).

``connection_alive`` asks the socket instead. A connection idle in the pool has
nothing to read; when the server ends it, it writes its FATAL message and
closes the socket, which then polls readable. So: a broken or closed
connection fails at once; a readable one gets Django's round trip, which fails
for an ended session and drains a notice for a live one; the rest are handed
out as they are. What a poll cannot see (a peer gone silent without a word) a
round trip would not catch either before its timeout. ``DATABASES["default"]
["ENGINE"]`` names this package when the pool is on (``tms_console.settings``).
"""

from __future__ import annotations

import select
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql

__all__ = ["DatabaseWrapper", "connection_alive"]


def connection_alive(conn: Any) -> None:
    """The pool's check (``psycopg_pool`` calls it on hand-out): raise if ``conn`` cannot serve."""
    import psycopg
    from psycopg_pool import ConnectionPool

    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        # Something arrived while nobody was asking: the server's goodbye, or a notice.
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(postgresql.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        django_side: Any = self  # what Django's backend keeps and the type stubs do not name
        pools: dict[str, Any] = django_side._connection_pools  # one per alias, shared by every thread
        if self.alias not in pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            from psycopg_pool import ConnectionPool

            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True  # Django sets the mode it wants when it takes the connection
            options = {} if pool_options is True else dict(pool_options)
            new = ConnectionPool(
                kwargs=kwargs,
                open=False,  # opened on first use, not at start-up
                configure=django_side._configure_connection,
                check=connection_alive if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **options,
            )
            pools.setdefault(self.alias, new)  # the first thread to get here wins
        return pools[self.alias]
