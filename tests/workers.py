"""A real Celery worker process on the real broker, working on the test database (services mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.conftest import require_service
from tests.servers import server_database_url

BASE_DIR = Path(__file__).resolve().parents[1]


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a worker that sees the rows the test commits (needs PostgreSQL and Redis)."""
    require_service("PostgreSQL", settings.IS_POSTGRES)
    require_service("Redis broker", settings.CELERY_BROKER_URL.startswith("redis://"))
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DATABASE_URL": server_database_url(),
        **extra,
    }


def worker_start(
    env: dict[str, str],
    *,
    pool: str = "solo",
    concurrency: int = 1,
    include: str = "",
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """One worker (solo pool unless told otherwise; ``include``: extra task modules); the caller terminates it.

    With ``log_path`` its output (at INFO) goes there, else nowhere.
    """
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tms_console",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={'INFO' if log_path else 'WARNING'}",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
    ]
    if include:
        argv.append(f"--include={include}")
    if log_path is None:
        return subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log_path.open("ab") as output:  # the child holds its own copy
        return subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)


def beat_start(env: dict[str, str], *, schedule: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Celery beat with its schedule file at ``schedule``; the caller terminates it."""
    argv = [sys.executable, "-m", "celery", "-A", "tms_console", "beat", "--loglevel=INFO", "-s", str(schedule)]
    with log_path.open("ab") as output:
        return subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
