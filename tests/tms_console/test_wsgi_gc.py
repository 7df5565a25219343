"""The WSGI entry point (gunicorn's partner server) moves what it loaded out of the cycle collector's reach."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]

PROBE = """
import gc
before = gc.get_freeze_count()
import tms_console.wsgi
print(before, gc.get_freeze_count(), gc.isenabled())
"""


def test_loading_the_wsgi_application_freezes_what_it_loaded_and_keeps_the_collector_on() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms_console.settings_test", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    before, after, enabled = done.stdout.split()[-3:]
    assert int(before) == 0
    # Django, DRF and the apps: far more than a handful of objects.
    assert int(after) > 50_000
    assert enabled == "True"  # frozen objects are skipped; everything newer is still collected
