"""Settings come only from the environment.

Each case starts a fresh interpreter with a controlled environment, because
the settings module is evaluated once per process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]

BASE_DIR = Path(__file__).resolve().parents[2]
DEV_KEY_HINT = "dev-only-insecure-key"
PROD_SECRET_KEY = "x7Qp!rV2mLs9#TzW4bN8kYd3^HfJ6gCa1uEo5iRn0eSw-Pq_Zt"

# Print the values the tests look at as one JSON object.
_DUMP = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "ENGINE": db["ENGINE"], "NAME": str(db["NAME"]), "OPTIONS": db.get("OPTIONS", {}),
    "CONN_MAX_AGE": db.get("CONN_MAX_AGE"), "CONN_HEALTH_CHECKS": db.get("CONN_HEALTH_CHECKS"),
    "CACHE": s.CACHES["default"]["BACKEND"], "CACHE_LOCATION": s.CACHES["default"].get("LOCATION"),
    "CHANNEL_LAYER": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "CHANNEL_CONFIG": s.CHANNEL_LAYERS["default"].get("CONFIG", {}),
    "BROKER": s.CELERY_BROKER_URL, "BROKER_OPTIONS": s.CELERY_BROKER_TRANSPORT_OPTIONS,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS, "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "DEBUG": s.DEBUG, "TIME_ZONE": s.TIME_ZONE, "USE_TZ": s.USE_TZ,
    "SECRET_KEY_IS_DEV": "dev-only-insecure-key" in s.SECRET_KEY,
}, default=str))
"""


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A minimal environment: nothing from the developer's shell leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DJANGO_SETTINGS_MODULE": "tms_console.settings",
        "TMS_VAR_DIR": str(tmp_path / "var"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(overrides)
    return env


def _run(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = _run(tmp_path, _DUMP, **env)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_default_database_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])\n"
        "print(connection.settings_dict['NAME'])\n"
    )
    result = _run(tmp_path, code, DEBUG="1")
    assert result.returncode == 0, result.stderr
    mode, name = result.stdout.strip().splitlines()[-2:]
    assert mode.lower() == "wal"
    assert Path(name) == tmp_path / "var" / "tms.sqlite3"
    assert (tmp_path / "var" / "tms.sqlite3-wal").exists() or (tmp_path / "var" / "tms.sqlite3").exists()


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    s = _settings(tmp_path, DEBUG="1")
    assert s["ENGINE"] == "django.db.backends.sqlite3"
    assert s["CHANNEL_LAYER"] == "channels.layers.InMemoryChannelLayer"
    assert s["CACHE"] == "django.core.cache.backends.db.DatabaseCache"
    assert s["BROKER"] == "filesystem://"
    queue_dir = tmp_path / "var" / "celery-queue"
    assert s["BROKER_OPTIONS"]["data_folder_in"] == str(queue_dir)
    assert s["BROKER_OPTIONS"]["data_folder_out"] == str(queue_dir)
    # Fanout tables must not land in whatever directory the process started in.
    assert s["BROKER_OPTIONS"]["control_folder"] == str(queue_dir / "control")
    assert (queue_dir / "processed").is_dir()
    assert s["TIME_ZONE"] == "UTC"
    assert s["USE_TZ"] is True


def test_postgres_url_uses_the_psycopg_pool(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        DEBUG="1",
        DATABASE_URL="postgres://tms:pw@db.internal:5433/tms_prod",
        DB_POOL_MIN="3",
        DB_POOL_MAX="7",
    )
    # Django's PostgreSQL backend, whose pool checks connections without a round trip.
    assert s["ENGINE"] == "tms_console.postgresql"
    assert s["CONN_HEALTH_CHECKS"] is True
    assert s["NAME"] == "tms_prod"
    assert s["OPTIONS"]["pool"] == {"min_size": 3, "max_size": 7, "timeout": 10}
    # Pooled connections are returned to the pool; persistent ones would bypass it.
    assert s["CONN_MAX_AGE"] == 0


def test_postgres_pool_can_be_turned_off(tmp_path: Path) -> None:
    s = _settings(tmp_path, DEBUG="1", DATABASE_URL="postgres://tms@db.internal/tms", DB_POOL="0")
    assert "pool" not in s["OPTIONS"]
    assert s["ENGINE"] == "django.db.backends.postgresql"


def test_redis_url_switches_channel_layer_cache_and_broker(tmp_path: Path) -> None:
    url = "redis://cache.internal:6380/2"
    s = _settings(tmp_path, DEBUG="1", REDIS_URL=url)
    assert s["CHANNEL_LAYER"] == "channels_redis.core.RedisChannelLayer"
    (host,) = s["CHANNEL_CONFIG"]["hosts"]
    assert host["address"] == url
    # Outlasts channels_redis's blocking wait for messages: redis-py 8's 5 s default read timeout
    # tore down every socket that had been idle for 5 s.
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
    assert s["CACHE"] == "django.core.cache.backends.redis.RedisCache"
    assert s["CACHE_LOCATION"] == url
    assert s["BROKER"] == url
    assert s["BROKER_OPTIONS"] == {}


def test_explicit_broker_url_wins_over_redis(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        DEBUG="1",
        REDIS_URL="redis://cache.internal:6379/0",
        CELERY_BROKER_URL="amqp://guest:guest@mq.internal:5672//",
    )
    assert s["BROKER"] == "amqp://guest:guest@mq.internal:5672//"
    assert s["CHANNEL_LAYER"] == "channels_redis.core.RedisChannelLayer"


def test_missing_secret_key_in_production_refuses_to_start(tmp_path: Path) -> None:
    # SECRET_KEY set but empty, so a developer's .env file cannot fill it in.
    result = _run(tmp_path, "import django; django.setup()", DEBUG="0", SECRET_KEY="", ALLOWED_HOSTS="tms.example.com")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_migration_check_runs_without_a_secret_key_but_serving_does_not(tmp_path: Path) -> None:
    env = _env(tmp_path, DEBUG="0", SECRET_KEY="", ALLOWED_HOSTS="tms.example.com")
    check = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "No changes detected" in check.stdout
    serve = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert serve.returncode != 0 and "SECRET_KEY is not set" in serve.stderr


def test_debug_allows_the_development_key(tmp_path: Path) -> None:
    s = _settings(tmp_path, DEBUG="1")
    assert s["DEBUG"] is True
    assert s["SECRET_KEY_IS_DEV"] is True
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]


def test_production_uses_the_given_key_and_no_default_hosts(tmp_path: Path) -> None:
    s = _settings(tmp_path, DEBUG="0", SECRET_KEY=PROD_SECRET_KEY)
    assert s["DEBUG"] is False
    assert s["SECRET_KEY_IS_DEV"] is False
    assert s["ALLOWED_HOSTS"] == []


def test_hosts_and_trusted_origins_are_comma_separated_lists(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        DEBUG="0",
        SECRET_KEY=PROD_SECRET_KEY,
        ALLOWED_HOSTS="tms.example.com,.ops.example.com",
        CSRF_TRUSTED_ORIGINS="https://tms.example.com,https://ops.example.com",
    )
    assert s["ALLOWED_HOSTS"] == ["tms.example.com", ".ops.example.com"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://tms.example.com", "https://ops.example.com"]


# The production environment the README documents for `check --deploy`.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": PROD_SECRET_KEY,
    "ALLOWED_HOSTS": "tms.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://tms.example.com",
    "SECURE_PROXY_SSL_HEADER": "1",
    "METRICS_TOKEN": "prometheus-scrape-token-example-0123456789",
}


def _evidence_key(tmp_path: Path) -> str:
    """A production deployment has an evidence signing key: make one outside the tree."""
    keys = tmp_path / "keys"
    subprocess.run(
        [sys.executable, "manage.py", "evidence_keygen", "--out", str(keys)],
        cwd=BASE_DIR,
        env=_env(tmp_path, DEBUG="1"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    (private,) = keys.glob("*.key.pem")
    return str(private)


def test_check_deploy_reports_no_warnings_with_production_env(tmp_path: Path) -> None:
    env = {**PRODUCTION_ENV, "EVIDENCE_SIGNING_KEY_FILE": _evidence_key(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_check_deploy_flags_debug_in_production(tmp_path: Path) -> None:
    """The check is not vacuous: the same command complains when DEBUG is left on."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=_env(tmp_path, **{**PRODUCTION_ENV, "DEBUG": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "security.W018" in result.stdout + result.stderr


def test_check_deploy_warns_when_metrics_have_no_token(tmp_path: Path) -> None:
    """Without METRICS_TOKEN production serves no /metrics: the deploy check says so."""
    env = {**PRODUCTION_ENV, "EVIDENCE_SIGNING_KEY_FILE": _evidence_key(tmp_path), "METRICS_TOKEN": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "tms_console.W001" in result.stdout + result.stderr


@pytest.mark.parametrize("value", ["1", "0"])
def test_secure_cookies_and_redirect_follow_debug(tmp_path: Path, value: str) -> None:
    code = (
        "import json, django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(json.dumps([s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS > 0]))\n"
    )
    result = _run(tmp_path, code, DEBUG=value, SECRET_KEY=PROD_SECRET_KEY)
    assert result.returncode == 0, result.stderr
    flags = json.loads(result.stdout.strip().splitlines()[-1])
    assert flags == [value == "0"] * 4


def _settings_variables() -> set[str]:
    source = (BASE_DIR / "tms_console" / "settings.py").read_text()
    names = set(
        re.findall(
            r"""(?:\benv|\bEnv\(\))\.(?:str|bool|int|float|list|db_url|url|json)\(\s*["']([A-Z0-9_]+)["']""", source
        )
    )
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TMS_VAR_DIR"} <= names  # the pattern still matches
    return names


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_settings_variable_is_documented(document: str) -> None:
    text = (BASE_DIR / document).read_text()
    missing = sorted(name for name in _settings_variables() if not re.search(rf"\b{name}\b", text))
    assert not missing, f"{document} does not document: {', '.join(missing)}"
