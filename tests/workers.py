"""A real Celery worker process on the real broker, working on the test database (services mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.conftest import require_service

BASE_DIR = Path(__file__).resolve().parents[1]


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a worker that sees the rows the test commits (needs PostgreSQL and Redis)."""
    require_service("PostgreSQL", settings.IS_POSTGRES)
    require_service("Redis broker", settings.CELERY_BROKER_URL.startswith("redis://"))
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
        **extra,
    }


def worker_start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One solo-pool worker; the caller terminates it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tms_console",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
