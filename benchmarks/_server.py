"""Throw-away database, a fleet loaded in bulk, and the console served as in production, for the HTTP benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
# The bench process and the server sign sessions with the same key.
BENCH_SECRET_KEY = "bench-only-" + "x" * 50


def django_setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    # The production settings, as the server runs them (client secrets hashed the same way).
    os.environ["DJANGO_SETTINGS_MODULE"] = "tms_console.settings"
    os.environ.setdefault("TMS_TESTING", "1")
    os.environ["DB_POOL"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["SECRET_KEY"] = BENCH_SECRET_KEY
    import django

    django.setup()


@contextmanager
def throwaway_database(suffix: str) -> Iterator[str]:
    """Create ``<db>_bench_<suffix>`` from the migrations, yield its URL, drop it afterwards."""
    from django.db import connection

    url = os.environ["DATABASE_URL"]
    old_name = connection.settings_dict["NAME"]
    name = f"{old_name}_bench_{suffix}"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def workers_main(name: str, redis_db: int, run: Callable[[str, str], int]) -> int:
    """``main`` of a benchmark that starts a Celery worker and beat: ``run(db_url, redis_url)`` in a throw-away
    PostgreSQL database, with a Redis database of its own for the broker (a worker of the database you work
    in, as ``make run`` starts, must not take this run's tasks, nor this run's workers take its tasks)."""
    from urllib.parse import urlsplit

    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print(f"{name}: skipped, needs PostgreSQL (set DATABASE_URL or BENCH_DATABASE_URL to a postgres:// URL)")
        return 0
    redis_url = (
        urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")._replace(path=f"/{redis_db}").geturl()
    )
    os.environ["REDIS_URL"] = redis_url
    django_setup(url)
    with throwaway_database(name.removeprefix("bench_")) as db_url:
        try:
            return run(db_url, redis_url)
        finally:
            from django.db import connection

            # A killed worker's server process may still be on its way out; the drop waits for nobody.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


def fleet_create(carrier: Any, count: int) -> list[Any]:
    """``count`` en-route missions of ``carrier``, each with its own vehicle and shipment, in three bulk inserts."""
    from missions.choices import MissionStatus
    from missions.models import Mission, Shipment, Vehicle
    from tests.factories import ShipmentFactory

    shipments = Shipment.objects.bulk_create(
        [ShipmentFactory.build(reference=f"BENCH-{carrier.slug}-{n:06d}") for n in range(count)], batch_size=1000
    )
    vehicles = Vehicle.objects.bulk_create(
        [Vehicle(carrier=carrier, external_id=f"TRK-{n:06d}") for n in range(count)], batch_size=1000
    )
    return Mission.objects.bulk_create(
        [
            Mission(shipment=s, carrier=carrier, vehicle=v, route_id="I-45-S", correlation_id=s.correlation_id,
                    status=MissionStatus.EN_ROUTE)
            for s, v in zip(shipments, vehicles, strict=True)
        ],
        batch_size=1000,
    )  # fmt: skip


GUNICORN_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "32"))


def server_env(db_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings",
        "DATABASE_URL": db_url,
        "DEBUG": "0",
        "TMS_TESTING": "0",
        "DB_POOL": "1",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "API_RATE_LIMIT": "100000000/min",
        # A connection for each gunicorn thread that needs one, and the group-commit writer.
        "DB_POOL_MAX": str(GUNICORN_THREADS + 2),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def partner_command(port: int) -> list[str]:
    """The partner API server exactly as ``make run`` starts it (``scripts/run_all.py``'s ``partner_spec``).

    gunicorn, ``tms_console.gunicorn_worker.ProblemThreadWorker``, 2 workers x 32 threads (README "Scaling").
    """
    import importlib.util

    # By path: ``benchmarks/run_all.py`` would shadow the name ``run_all``.
    spec = importlib.util.spec_from_file_location("tms_scripts_run_all", BASE_DIR / "scripts" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    argv: list[str] = module.partner_spec(host="127.0.0.1", port=port, drain_seconds=10.0).argv
    return argv


def server_command(kind: str, port: int, workers: int = 2) -> list[str]:
    if kind == "partner":
        return partner_command(port)
    if kind == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tms_console.asgi:application"]
    if kind == "gunicorn":
        # gthread: a worker's threads can wait on the same group commit (missions.telemetry.group_commit).
        return [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers),
                "--worker-class", "gthread", "--threads", str(GUNICORN_THREADS), "--backlog", "2048",
                "--log-level", "warning", "tms_console.wsgi:application"]  # fmt: skip
    raise ValueError(kind)


@contextmanager
def served(
    kind: str, port: int, env: dict[str, str], workers: int = 2, nice: int = 0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the server (``nice``: that much lower CPU priority), wait for ``/healthz``, stop it afterwards."""
    import httpx

    proc = subprocess.Popen(
        server_command(kind, port, workers), cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )  # fmt: skip
    try:
        for _ in range(150):
            if proc.poll() is not None:
                raise SystemExit(f"{kind} exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"{kind} did not start")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn workers), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024
