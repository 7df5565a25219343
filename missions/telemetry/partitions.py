"""Time partitions of the telemetry tables on PostgreSQL (docs/decisions/0028-telemetry-partitions.md).

The samples are range-partitioned by ``recorded_at`` in UTC days, the window
in UTC hours; each table also has a DEFAULT partition for a row no partition
covers (the task that creates them ahead did not run, or a test's clock is
elsewhere). ``partitions_ensure`` creates them ahead; retention detaches and
drops whole partitions (``drop_before``) and thins a day of samples by
rewriting it (``thin_partition``); only the DEFAULT partition is ever
cleaned row by row. SQLite, and a PostgreSQL database that was never
converted, keep plain tables: ``is_partitioned`` says which.

Dedupe: the window's key is (event_id, recorded_at), a unique key that
contains the partition column, so a retry meets its first copy in the same
partition; an hour of the window lives its end plus the dedupe horizon plus
``WINDOW_LATE_MARGIN``, and older events go to the DEFAULT partition, pruned
by arrival; a sample's (vehicle, second) index is
created on every partition, and a second never spans two UTC days, so a
(vehicle, second) pair can only ever be in one partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

# A DDL statement waits at most this long for its lock: dropping or attaching a partition
# needs a short exclusive lock on the parent, and a long wait would queue ingest behind it.
LOCK_TIMEOUT = "5s"
DELETE_CHUNK = 10_000
# An hour of the window is kept this long past its end plus the dedupe horizon. An event later than
# this finds no hour of its own and goes to the DEFAULT partition, pruned by arrival as before.
WINDOW_LATE_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    step: timedelta
    # Indexes made on each partition rather than on the parent: unique keys without the partition column.
    leaf_indexes: tuple[tuple[str, str], ...] = ()

    @property
    def default(self) -> str:
        return f"{self.name}_default"

    def partition_name(self, lower: datetime) -> str:
        fmt = "%Y%m%d" if self.step >= timedelta(days=1) else "%Y%m%d%H"
        return f"{self.name}_p{lower.astimezone(UTC).strftime(fmt)}"

    def floor(self, at: datetime) -> datetime:
        at = at.astimezone(UTC)
        if self.step >= timedelta(days=1):
            return at.replace(hour=0, minute=0, second=0, microsecond=0)
        return at.replace(minute=0, second=0, microsecond=0)


SAMPLES = PartitionedTable(
    name="missions_telemetrysample",
    step=timedelta(days=1),
    # One sample per vehicle per second: exact across the table, since a second lies in one UTC day.
    leaf_indexes=(("1hz", "CREATE UNIQUE INDEX {index} ON {table} (vehicle_id, bucket_s)"),),
)
WINDOW = PartitionedTable(name="missions_telemetrywindowevent", step=timedelta(hours=1))
TABLES = (SAMPLES, WINDOW)

_BOUND = re.compile(r"_p(\d{8})(\d{2})?$")


def is_partitioned(table: PartitionedTable) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [table.name])
        row = cursor.fetchone()
    return bool(row and row[0])


def partitions(table: PartitionedTable) -> list[tuple[str, datetime, datetime]]:
    """The table's time partitions as (name, lower, upper), oldest first; the DEFAULT one is not listed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s)",
            [table.name],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _BOUND.search(name)
        if match is None:
            continue
        day, hour = match.groups()
        lower = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC) + timedelta(hours=int(hour or 0))
        found.append((name, lower, lower + table.step))
    return sorted(found, key=lambda p: p[1])


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _leaf_indexes(cursor: Any, table: PartitionedTable, partition: str, *, index_prefix: str = "") -> None:
    for suffix, template in table.leaf_indexes:
        index = f"{index_prefix or partition}_{suffix}"
        cursor.execute(template.format(index=_quote(index), table=_quote(partition)))


def _create_like(cursor: Any, table: PartitionedTable, new: str, name: str, lower: datetime, upper: datetime) -> None:
    """A plain table with the parent's columns and indexes, and a CHECK of the range ``name`` will cover."""
    cursor.execute(
        f"CREATE TABLE {_quote(new)} (LIKE {_quote(table.name)} INCLUDING DEFAULTS INCLUDING STORAGE"
        f" INCLUDING INDEXES, CONSTRAINT {_quote(name + '_range')} CHECK (recorded_at >= %s AND recorded_at < %s))",
        [lower, upper],
    )


# The SQL below is built only from the table names above and partition names made from dates (S608).


def partition_create(table: PartitionedTable, lower: datetime) -> str:
    """Create and attach the partition starting at ``lower``, taking over rows the DEFAULT partition holds for it.

    Built apart and attached: attaching locks the parent only in SHARE UPDATE
    EXCLUSIVE mode (ingest goes on), and the range CHECK spares the scan.
    """
    upper = lower + table.step
    name = table.partition_name(lower)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        _create_like(cursor, table, name, name, lower, upper)
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_quote(table.default)} WHERE recorded_at >= %s AND recorded_at < %s"  # noqa: S608  # nosec B608
            f" RETURNING *) INSERT INTO {_quote(name)} SELECT * FROM moved",
            [lower, upper],
        )
        _leaf_indexes(cursor, table, name)
        cursor.execute(
            f"ALTER TABLE {_quote(table.name)} ATTACH PARTITION {_quote(name)} FOR VALUES FROM (%s) TO (%s)",
            [lower, upper],
        )
        cursor.execute(f"ALTER TABLE {_quote(name)} DROP CONSTRAINT {_quote(name + '_range')}")
    return name


def partitions_ensure(*, now: datetime | None = None) -> int:
    """Create the partitions from the oldest time ingest accepts to ``TELEMETRY_PARTITIONS_AHEAD_DAYS`` ahead."""
    now = now or timezone.now()
    created = 0
    for table in TABLES:
        if not is_partitioned(table):
            continue
        have = {lower for _, lower, _ in partitions(table)}
        lower = table.floor(now - oldest_kept(table))
        last = table.floor(now + timedelta(days=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS))
        while lower <= last:
            if lower not in have:
                partition_create(table, lower)
                created += 1
            lower += table.step
    return created


def oldest_kept(table: PartitionedTable) -> timedelta:
    """How far back ``table`` keeps partitions: the samples every day ingest accepts, the window the
    dedupe horizon and ``WINDOW_LATE_MARGIN`` (older events go to its DEFAULT partition)."""
    if table is WINDOW:
        return timedelta(seconds=settings.TELEMETRY_DEDUPE_SECONDS) + WINDOW_LATE_MARGIN
    return timedelta(seconds=settings.TELEMETRY_MAX_AGE_SECONDS)


def drop_before(table: PartitionedTable, cutoff: datetime) -> list[str]:
    """Detach and drop every partition whose rows all lie before ``cutoff``: no row is read or deleted."""
    dropped = []
    for name, _, upper in partitions(table):
        if upper > cutoff:
            break
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(f"ALTER TABLE {_quote(table.name)} DETACH PARTITION {_quote(name)}")
            cursor.execute(f"DROP TABLE {_quote(name)}")
        dropped.append(name)
    return dropped


def default_delete(table: PartitionedTable, where: str, params: list[Any]) -> int:
    """Delete rows of the DEFAULT partition in chunks (it normally holds none)."""
    total = 0
    default = _quote(table.default)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {default} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {default} WHERE {where} LIMIT %s))",  # noqa: S608  # nosec B608
                [*params, DELETE_CHUNK],
            )
            deleted = int(cursor.rowcount)
        total += deleted
        if deleted < DELETE_CHUNK:
            return total


_THINNED = "thinned every {step} s"


def thin_partition(table: PartitionedTable, name: str, lower: datetime, step: int) -> int:
    """Keep one sample per vehicle every ``step`` seconds of a day's partition, by rewriting it; rows removed.

    The kept rows (about one in ``step``) are copied into a new table, indexed
    like a partition, while the old partition is locked against writes (reads
    go on); then the two are swapped, which locks the parent only for the
    swap itself (the range CHECK spares the attach its scan). Ids, and so the cursors that read
    samples by id, are untouched. A partition done is marked by its comment.
    """
    upper = lower + table.step
    new = f"{name}_thin"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"LOCK TABLE {_quote(name)} IN SHARE MODE")
        cursor.execute(f"SELECT count(*) FROM {_quote(name)}")  # noqa: S608  # nosec B608
        before = cursor.fetchone()[0]
        _create_like(cursor, table, new, name, lower, upper)
        cursor.execute(
            f"INSERT INTO {_quote(new)} SELECT * FROM {_quote(name)} WHERE bucket_s IS NULL OR bucket_s %% %s = 0",  # noqa: S608  # nosec B608
            [step],
        )
        kept = int(cursor.rowcount)
        _leaf_indexes(cursor, table, new, index_prefix=f"{name}_t{step}")
        cursor.execute(f"ALTER TABLE {_quote(table.name)} DETACH PARTITION {_quote(name)}")
        cursor.execute(f"DROP TABLE {_quote(name)}")
        cursor.execute(f"ALTER TABLE {_quote(new)} RENAME TO {_quote(name)}")
        cursor.execute(
            f"ALTER TABLE {_quote(table.name)} ATTACH PARTITION {_quote(name)} FOR VALUES FROM (%s) TO (%s)",
            [lower, upper],
        )
        cursor.execute(f"ALTER TABLE {_quote(name)} DROP CONSTRAINT {_quote(name + '_range')}")
        cursor.execute(f"COMMENT ON TABLE {_quote(name)} IS %s", [_THINNED.format(step=step)])
    return int(before) - kept


def thinned(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [name])
        row = cursor.fetchone()
    return (row[0] if row else None) or ""


def thin_before(table: PartitionedTable, cutoff: datetime, step: int) -> tuple[int, int]:
    """Thin every day partition wholly before ``cutoff`` not thinned at this step yet: (partitions, rows removed)."""
    done = removed = 0
    mark = _THINNED.format(step=step)
    for name, lower, upper in partitions(table):
        if upper > cutoff:
            break
        if thinned(name) == mark:
            continue
        removed += thin_partition(table, name, lower, step)
        done += 1
    return done, removed
