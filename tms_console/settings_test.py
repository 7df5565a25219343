"""Settings for the test suite: the normal settings with a test flag set first."""

import os

os.environ.setdefault("TMS_TESTING", "1")
os.environ.setdefault("DB_POOL", "0")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
# Test servers do not run the safety ticker unless a test turns it on.
os.environ.setdefault("SAFETY_TICKER", "0")
# No spans unless a test turns tracing on (tests/tracing.py); servers started by tests inherit this.
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from tms_console.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if not REDIS_URL:  # noqa: F405
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
