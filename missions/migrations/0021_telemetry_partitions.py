"""Time-partition the telemetry tables on PostgreSQL (docs/decisions/0028-telemetry-partitions.md).

Each table is rebuilt as a partitioned table of the same name and columns:
the old one is renamed, the new one created with its partitions (days for
the samples, hours for the window, one DEFAULT partition each), the rows
copied, the old table dropped. Sample ids keep coming from one sequence,
continued from the old one, so the cursors that read samples by id go on.
The copy takes time in proportion to the rows (stop ingest while it runs).

A no-op on SQLite and on a table already partitioned. Going back leaves the
tables partitioned: the code works with either layout.
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import migrations

SAMPLES = "missions_telemetrysample"
WINDOW = "missions_telemetrywindowevent"


def _q(schema_editor, name):
    return schema_editor.quote_name(name)


def _floor(at, step):
    if step >= timedelta(days=1):
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def _partition_name(table, lower, step):
    return f"{table}_p{lower.strftime('%Y%m%d' if step >= timedelta(days=1) else '%Y%m%d%H')}"


def _convert(schema_editor, table, *, step, key, leaf_unique, dropped_indexes, identity):
    q = lambda name: _q(schema_editor, name)  # noqa: E731
    old = f"{table}_unpartitioned"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
        if row is None or row[0] == "p":
            return
        cursor.execute(f"LOCK TABLE {q(table)} IN ACCESS EXCLUSIVE MODE")
        next_id = None
        if identity:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
            next_id = cursor.fetchone()[0]
        # The indexes to carry over (by definition), and the names to free on the old table.
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid), x.indisprimary, c.conname"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = x.indrelid"
            " WHERE x.indrelid = to_regclass(%s)",
            [table],
        )
        indexes = cursor.fetchall()
        cursor.execute(f"ALTER TABLE {q(table)} RENAME TO {q(old)}")
        recreate = []
        for name, definition, primary, constraint in indexes:
            if constraint:
                cursor.execute(f"ALTER TABLE {q(old)} DROP CONSTRAINT {q(constraint)}")
            else:
                cursor.execute(f"DROP INDEX {q(name)}")
            if not primary and name not in dropped_indexes and not constraint:
                recreate.append(definition)
        if identity:
            cursor.execute(f"ALTER TABLE {q(old)} ALTER COLUMN id DROP IDENTITY")
        cursor.execute(
            f"CREATE TABLE {q(table)} (LIKE {q(old)} INCLUDING DEFAULTS INCLUDING STORAGE,"
            f" PRIMARY KEY ({key}, recorded_at)) PARTITION BY RANGE (recorded_at)"
        )
        if identity:
            sequence = f"{table}_id_seq"
            cursor.execute(f"CREATE SEQUENCE {q(sequence)} OWNED BY {q(table)}.id")
            cursor.execute("SELECT setval(%s, %s, false)", [sequence, next_id])
            cursor.execute(f"ALTER TABLE {q(table)} ALTER COLUMN id SET DEFAULT nextval(%s::regclass)", [sequence])
        for definition in recreate:
            cursor.execute(definition)  # "ON public.<table>" names the new parent now

        # Partitions: from the oldest row (or the oldest time ingest accepts) to the days ahead.
        now = datetime.now(UTC)
        cursor.execute(f"SELECT min(recorded_at), max(recorded_at) FROM {q(old)}")  # noqa: S608  # nosec B608
        oldest, newest = cursor.fetchone()
        first = now - timedelta(seconds=settings.TELEMETRY_MAX_AGE_SECONDS)
        if oldest is not None and step >= timedelta(days=1):
            first = min(first, oldest)  # every day of samples kept gets its partition
        last = now + timedelta(days=settings.TELEMETRY_PARTITIONS_AHEAD_DAYS)
        if newest is not None:
            last = max(last, newest)
        lower = _floor(first.astimezone(UTC), step)
        partitions = []
        while lower <= last:
            name = _partition_name(table, lower, step)
            cursor.execute(
                f"CREATE TABLE {q(name)} PARTITION OF {q(table)} FOR VALUES FROM (%s) TO (%s)",
                [lower, lower + step],
            )
            partitions.append(name)
            lower += step
        partitions.append(f"{table}_default")
        cursor.execute(f"CREATE TABLE {q(partitions[-1])} PARTITION OF {q(table)} DEFAULT")
        if leaf_unique:
            suffix, columns = leaf_unique
            for name in partitions:
                cursor.execute(f"CREATE UNIQUE INDEX {q(name + '_' + suffix)} ON {q(name)} ({columns})")
        cursor.execute(f"INSERT INTO {q(table)} SELECT * FROM {q(old)}")  # noqa: S608  # nosec B608
        cursor.execute(f"DROP TABLE {q(old)}")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _convert(
        schema_editor,
        SAMPLES,
        step=timedelta(days=1),
        key="id",
        leaf_unique=("1hz", "vehicle_id, bucket_s"),
        dropped_indexes=(),
        identity=True,
    )
    # The window's arrival-time index served the row-by-row prune, which partitions replace.
    cursor = schema_editor.connection.cursor()
    cursor.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
        " WHERE x.indrelid = to_regclass(%s) AND a.attname = 'received_at'",
        [WINDOW],
    )
    received = tuple(row[0] for row in cursor.fetchall())
    _convert(
        schema_editor,
        WINDOW,
        step=timedelta(hours=1),
        key="event_id",
        leaf_unique=None,
        dropped_indexes=received,
        identity=False,
    )


class Migration(migrations.Migration):
    dependencies = [("missions", "0020_edi")]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]
