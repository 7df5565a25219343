"""Settings for the TMS console.

Every value comes from the environment (django-environ); `.env.example` and the
README list each variable. The defaults give the whole product on a machine
with no servers: SQLite in WAL mode, an in-process channel layer relayed from
the event outbox, and a filesystem Celery broker.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("TMS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG: bool = env.bool("DEBUG", default=False)
TESTING: bool = env.bool("TMS_TESTING", default=False)

# A development key is only acceptable while DEBUG is on (or under the test
# settings); a production process refuses to start without a real one.
# Management commands that only read the code (never serve, sign or touch sessions)
# run without one, so a migration check works on a bare checkout.
OFFLINE_COMMANDS = frozenset({"makemigrations", "showmigrations", "help"})
_offline = Path(sys.argv[0]).name == "manage.py" and len(sys.argv) > 1 and sys.argv[1] in OFFLINE_COMMANDS
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"
    elif _offline:
        SECRET_KEY = "offline-command-placeholder-key-that-signs-nothing-0123456789"
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (DEBUG=1 allows a development key)."
        )

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if (DEBUG or TESTING) else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL: str = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# Where carriers reach the partner HTTP API and webhooks (the WSGI server): the callback URLs
# sent with each tender and the simulators' target. `make run` sets it to its partner port.
# Empty: PUBLIC_BASE_URL (read when used, so a test that moves one moves both).
PARTNER_BASE_URL: str = env.str("PARTNER_BASE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "two_factor",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "channels",
    "tms_console",
    "missions",
    "sla",
    "runbooks",
]

MIDDLEWARE = [
    # Outermost, so every answer carries the policy, whichever middleware wrote it (tms_console/csp.py).
    "tms_console.csp.ContentSecurityPolicyMiddleware",
    "tms_console.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "tms_console.middleware.StaticFilesMiddleware",  # WhiteNoise, sync and async
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "tms_console.middleware.RequireOTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tms_console.urls"
WSGI_APPLICATION = "tms_console.wsgi.application"
ASGI_APPLICATION = "tms_console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tms_console.context_processors.console",
            ],
            # Tag libraries of rooms that are not Django apps of their own.
            "libraries": {"evidence_tags": "missions.evidence.template_tags"},
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tms.sqlite3'}"),
}
DB_ENGINE: str = DATABASES["default"]["ENGINE"]
IS_POSTGRES = "postgresql" in DB_ENGINE
IS_SQLITE = "sqlite" in DB_ENGINE
_db_options: dict[str, Any] = DATABASES["default"].setdefault("OPTIONS", {})
if IS_SQLITE:
    # WAL lets the web, worker and beat processes read while one writes;
    # IMMEDIATE transactions take the write lock up front instead of failing
    # half-way with "database is locked".
    _db_options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    _db_options.setdefault("transaction_mode", "IMMEDIATE")
    _db_options.setdefault("timeout", 20)
elif IS_POSTGRES and env.bool("DB_POOL", default=True):
    # Under ASGI every sync view runs in a thread that would otherwise open a
    # new connection per request (DESIGN.md §2: ~110 vs ~225 req/s).
    _db_options["pool"] = {
        "min_size": env.int("DB_POOL_MIN", default=2),
        "max_size": env.int("DB_POOL_MAX", default=20),
        # How long a request waits for a connection (all busy, or the database away) before its 503.
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The pool checks a connection when it hands it out: one the server ended while it sat in the
    # pool (a restart, a failover, pg_terminate_backend) is replaced, not answered with a 503. This
    # backend checks by polling the socket, without a round trip (tms_console/postgresql/base.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["ENGINE"] = "tms_console.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channel layer, Celery --------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    # redis-py 8 reads with a 5 s socket timeout by default, the same as the blocking pop with which
    # channels_redis waits for messages (BZPOPMIN, 5 s): a consumer idle for 5 s then died with
    # "Timeout reading from ...". The read timeout has to outlast the pop (channels_redis issue 422).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "tms_cache",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, writing each message whole (tms_console/broker_files.py).
    CELERY_BROKER_TRANSPORT = "tms_console.broker_files:Transport"
    _queue_dir = VAR_DIR / "celery-queue"
    (_queue_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        # Exchange tables for fanout (worker remote control); kombu's default
        # is a "control" folder relative to the current directory.
        "control_folder": str(_queue_dir / "control"),
        "polling_interval": 0.5,
    }
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The queue tasks go to and workers read (``celery worker -Q``): deployments sharing one broker keep apart.
CELERY_TASK_DEFAULT_QUEUE: str = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Worker and beat keep the JSON-lines LOGGING below (tms_console.celery).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Beat schedules a heartbeat task that logs one line per period (0 = off).
CELERY_HEARTBEAT_SECONDS: float = env.float("CELERY_HEARTBEAT_SECONDS", default=10)
# A beat or worker heartbeat older than this means the scheduler or the broker/worker path is down:
# /readyz says so and the web process's safety ticker takes over gap detection and runbook ticks.
SAFETY_STALE_SECONDS: float = env.float("SAFETY_STALE_SECONDS", default=30)
SAFETY_TICK_SECONDS: float = env.float("SAFETY_TICK_SECONDS", default=5)
SAFETY_TICKER: bool = env.bool("SAFETY_TICKER", default=True)
# Graceful shutdown: how long after SIGTERM each process may take to finish (or refuse) what it holds
# before it exits (README, "Graceful shutdown"); gunicorn's is its own --graceful-timeout.
WEB_DRAIN_SECONDS: float = env.float("WEB_DRAIN_SECONDS", default=10)
WORKER_DRAIN_SECONDS: float = env.float("WORKER_DRAIN_SECONDS", default=20)
MQTT_DRAIN_SECONDS: float = env.float("MQTT_DRAIN_SECONDS", default=10)

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "two_factor:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "two_factor:login"
OTP_TOTP_ISSUER = "TMS Console"
TWO_FACTOR_PATCH_ADMIN = False
TWO_FACTOR_REMEMBER_COOKIE_AGE = None
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# --- Internationalisation: UTC everywhere --------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files a browser asks for at the site's root (/favicon.ico), served by WhiteNoise before the sign-in gate.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Security (production) ----------------------------------------------------
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not (DEBUG or TESTING))
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not (DEBUG or TESTING))
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not (DEBUG or TESTING))
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if (DEBUG or TESTING) else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Logging: JSON lines with request / correlation ids ------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "tms_console.logging.ContextFilter"}},
    "formatters": {"json": {"()": "tms_console.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Event bus (NATS JetStream; off without NATS_URL) ---------------------------
NATS_URL: str = env.str("NATS_URL", default="")
BUS_SUBJECT_PREFIX: str = env.str("BUS_SUBJECT_PREFIX", default="tms")
BUS_EVENTS_STREAM: str = env.str("BUS_EVENTS_STREAM", default="TMS_EVENTS")
BUS_TELEMETRY_STREAM: str = env.str("BUS_TELEMETRY_STREAM", default="TMS_TELEMETRY")
BUS_MAX_AGE_HOURS: float = env.float("BUS_MAX_AGE_HOURS", default=168.0)
BUS_EVENTS_MAX_BYTES: int = env.int("BUS_EVENTS_MAX_BYTES", default=1024**3)
BUS_TELEMETRY_MAX_BYTES: int = env.int("BUS_TELEMETRY_MAX_BYTES", default=4 * 1024**3)
# JetStream drops a repeated Nats-Msg-Id inside this window: longer than the relay ever retries.
BUS_DUPLICATE_WINDOW_SECONDS: int = env.int("BUS_DUPLICATE_WINDOW_SECONDS", default=900)
BUS_BATCH_SIZE: int = env.int("BUS_BATCH_SIZE", default=1000)
BUS_GAP_GRACE_SECONDS: float = env.float("BUS_GAP_GRACE_SECONDS", default=30.0)
BUS_POLL_SECONDS: float = env.float("BUS_POLL_SECONDS", default=0.2)

# --- Tracing (OpenTelemetry; the SDK itself reads the OTEL_* variables) ----------
# Without an OTLP endpoint, spans go to the embedded span store (tms_console.trace_store).
TRACE_STORE_RETENTION_HOURS: float = env.float("TRACE_STORE_RETENTION_HOURS", default=24.0)
TRACE_STORE_MAX_SPANS: int = env.int("TRACE_STORE_MAX_SPANS", default=200_000)
# With an OTLP collector, where a trace is seen: "{trace_id}" is replaced (e.g. a Jaeger or Tempo URL).
TRACE_UI_URL: str = env.str("TRACE_UI_URL", default="")

# --- Product settings ---------------------------------------------------------
TELEMETRY_GAP_SECONDS_DEFAULT: int = env.int("TELEMETRY_GAP_SECONDS_DEFAULT", default=60)
# How often gap detection runs: a silence is alarmed at most this long (plus one pass) after it
# crosses its threshold (DESIGN.md §6: within threshold + 2 s; docs/decisions/0010-telemetry-ingest.md).
TELEMETRY_GAP_CHECK_SECONDS: float = env.float("TELEMETRY_GAP_CHECK_SECONDS", default=1.0)
# On: a thread of the beat process runs it (no broker, no queue behind the worker's long tasks);
# off: beat sends it to a worker as the task missions.telemetry.gaps_check.
TELEMETRY_GAP_DETECTOR_IN_BEAT: bool = env.bool("TELEMETRY_GAP_DETECTOR_IN_BEAT", default=True)
# Threads (each with a database connection) raising the silences one pass found, on PostgreSQL.
TELEMETRY_GAP_WORKERS: int = env.int("TELEMETRY_GAP_WORKERS", default=4)
TENDER_EXPIRY_SECONDS_DEFAULT: int = env.int("TENDER_EXPIRY_SECONDS_DEFAULT", default=900)

# --- Partner API v1 (OAuth2, problem+json, limits, schema, mTLS proxy) --------
# Problem details for every /api/ response that errs, even outside DRF views.
MIDDLEWARE.insert(
    MIDDLEWARE.index("tms_console.middleware.RequestIdMiddleware") + 1, "tms_console.problem.ApiProblemMiddleware"
)
# Outside the problem middleware, so its own answers (413, 404) carry the RateLimit fields too.
MIDDLEWARE.insert(
    MIDDLEWARE.index("tms_console.problem.ApiProblemMiddleware"),
    "missions.partner.api.throttling.RateLimitHeadersMiddleware",
)
# Inside the API middleware, so a lost database is answered 503 before it is called a 500.
MIDDLEWARE.insert(
    MIDDLEWARE.index("tms_console.problem.ApiProblemMiddleware") + 1, "tms_console.health.DatabaseUnavailableMiddleware"
)
API_MAX_BODY_BYTES: int = env.int("API_MAX_BODY_BYTES", default=1_048_576)
API_MAX_PAGE_SIZE: int = env.int("API_MAX_PAGE_SIZE", default=100)
# Requests per OAuth client (and, before authentication, per client address) and window: "1200/min",
# "100/10s"; empty turns the limit off. Counted atomically in RATELIMIT_REDIS_URL, else the database.
API_RATE_LIMIT: str = env.str("API_RATE_LIMIT", default="1200/min")
RATELIMIT_REDIS_URL: str = env.str("RATELIMIT_REDIS_URL", default=REDIS_URL)
# The guard on guessing: failures allowed per (user name or client id, address) and per address,
# then 429 until the window slides on (README "Security"). Bearer tokens are counted per address only.
AUTH_GUARD_BEARER_PER_ADDRESS: str = env.str("AUTH_GUARD_BEARER_PER_ADDRESS", default="30/10min")
AUTH_GUARD_SECRET_PER_CLIENT: str = env.str("AUTH_GUARD_SECRET_PER_CLIENT", default="10/15min")
AUTH_GUARD_PASSWORD_PER_USER: str = env.str("AUTH_GUARD_PASSWORD_PER_USER", default="5/15min")
AUTH_GUARD_PER_ADDRESS: str = env.str("AUTH_GUARD_PER_ADDRESS", default="50/15min")
API_TELEMETRY_MAX_BATCH: int = env.int("API_TELEMETRY_MAX_BATCH", default=1000)
IDEMPOTENCY_RETENTION_HOURS: int = env.int("IDEMPOTENCY_RETENTION_HOURS", default=24)
# An in-flight record older than this is taken as abandoned (its worker died) and may be retried.
IDEMPOTENCY_IN_FLIGHT_TIMEOUT_SECONDS: int = env.int("IDEMPOTENCY_IN_FLIGHT_TIMEOUT_SECONDS", default=120)
WEBHOOK_TOLERANCE_SECONDS: int = env.int("WEBHOOK_TOLERANCE_SECONDS", default=300)
# Verified telemetry deliveries per carrier and minute on the WSGI fast path (a 1,000-truck fleet at 1 Hz sends 60,000).
WEBHOOK_RATE_LIMIT: int = env.int("WEBHOOK_RATE_LIMIT", default=120_000)
WEBHOOK_ROTATION_OVERLAP_HOURS: int = env.int("WEBHOOK_ROTATION_OVERLAP_HOURS", default=24)
WEBHOOK_RECEIPT_RETENTION_DAYS: int = env.int("WEBHOOK_RECEIPT_RETENTION_DAYS", default=7)
# RFC 8705: the client certificate is read from these headers only when the
# request comes from one of these proxy addresses (the TLS terminator).
PARTNER_TRUSTED_PROXIES: list[str] = env.list("PARTNER_TRUSTED_PROXIES", default=[])
PARTNER_CLIENT_CERT_HEADER: str = env.str("PARTNER_CLIENT_CERT_HEADER", default="HTTP_X_SSL_CLIENT_CERT")
PARTNER_CLIENT_VERIFY_HEADER: str = env.str("PARTNER_CLIENT_VERIFY_HEADER", default="HTTP_X_SSL_CLIENT_VERIFY")
# RFC 8414 issuer: the origin carriers reach the token endpoint at (the partner edge), without a path;
# by default the origin of PUBLIC_BASE_URL.
_public = urlsplit(PUBLIC_BASE_URL)
OAUTH2_ISSUER: str = env.str("OAUTH2_ISSUER", default=f"{_public.scheme}://{_public.netloc}").rstrip("/")
if urlsplit(OAUTH2_ISSUER).path or not urlsplit(OAUTH2_ISSUER).netloc or "?" in OAUTH2_ISSUER or "#" in OAUTH2_ISSUER:
    # The metadata is served at /.well-known/oauth-authorization-server, the place for an issuer without a path.
    raise ImproperlyConfigured(
        f"OAUTH2_ISSUER must be an origin such as https://partners.example, not {OAUTH2_ISSUER!r}"
    )
DATA_UPLOAD_MAX_MEMORY_SIZE = max(API_MAX_BODY_BYTES, 2_621_440)

# Calls to URLs that people outside gave the console (a carrier's sandbox): tms_console/egress.py.
# Only public addresses are called; these networks (CIDR, comma-separated) are allowed as well,
# e.g. a carrier sandbox in the same data centre, or 127.0.0.1/32 for the demo's simulator.
EGRESS_ALLOWED_NETWORKS: list[str] = env.list("EGRESS_ALLOWED_NETWORKS", default=[])
for _network in EGRESS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"EGRESS_ALLOWED_NETWORKS: {_network!r} is not a network ({_exc})") from _exc
# Carrier onboarding: how long an invitation link works (hours).
ONBOARDING_INVITATION_HOURS: int = env.int("ONBOARDING_INVITATION_HOURS", default=168)
if not 1 <= ONBOARDING_INVITATION_HOURS <= 24 * 30:
    raise ImproperlyConfigured("ONBOARDING_INVITATION_HOURS must be between 1 and 720.")
# Compliance documents (missions/onboarding/compliance.py): the largest PDF accepted (a console form's
# whole body is capped at DATA_UPLOAD_MAX_MEMORY_SIZE), the coverage a certificate of insurance must
# show, and how many days before a document's expiry its warnings go out.
COMPLIANCE_DOCUMENT_MAX_BYTES: int = env.int("COMPLIANCE_DOCUMENT_MAX_BYTES", default=2_097_152)
if not 1024 <= COMPLIANCE_DOCUMENT_MAX_BYTES <= DATA_UPLOAD_MAX_MEMORY_SIZE - 262_144:
    raise ImproperlyConfigured(
        f"COMPLIANCE_DOCUMENT_MAX_BYTES must be between 1024 and {DATA_UPLOAD_MAX_MEMORY_SIZE - 262_144}"
        " (a form's body is capped at DATA_UPLOAD_MAX_MEMORY_SIZE)."
    )
INSURANCE_MIN_AUTO_LIABILITY_USD: int = env.int("INSURANCE_MIN_AUTO_LIABILITY_USD", default=1_000_000)
INSURANCE_MIN_CARGO_USD: int = env.int("INSURANCE_MIN_CARGO_USD", default=100_000)
COMPLIANCE_WARNING_DAYS: list[int] = [int(d) for d in env.list("COMPLIANCE_WARNING_DAYS", default=["30", "7"])]
if not COMPLIANCE_WARNING_DAYS or any(not 1 <= d <= 365 for d in COMPLIANCE_WARNING_DAYS):
    raise ImproperlyConfigured("COMPLIANCE_WARNING_DAYS lists days between 1 and 365, e.g. 30,7.")
# Certification runs against a carrier's sandbox (missions/onboarding/certification.py): the deadline of
# each call, and the bound on the 95th percentile of the run's answered calls.
CERTIFICATION_CALL_TIMEOUT_SECONDS: float = env.float("CERTIFICATION_CALL_TIMEOUT_SECONDS", default=10.0)
CERTIFICATION_LATENCY_P95_MS: float = env.float("CERTIFICATION_LATENCY_P95_MS", default=1000.0)
# The carrier's side of a run: seconds of telemetry the sandbox is asked to send to the run's receiver.
CERTIFICATION_TELEMETRY_SECONDS: int = env.int("CERTIFICATION_TELEMETRY_SECONDS", default=5)
if not 1 <= CERTIFICATION_TELEMETRY_SECONDS <= 60:
    raise ImproperlyConfigured("CERTIFICATION_TELEMETRY_SECONDS is from 1 to 60 (the carrier API's limit).")
# The console's client certificate (PEM files) for sandboxes that authenticate it by mTLS or SVID.
CERTIFICATION_CLIENT_CERT_FILE: str = env.str("CERTIFICATION_CLIENT_CERT_FILE", default="")
CERTIFICATION_CLIENT_KEY_FILE: str = env.str("CERTIFICATION_CLIENT_KEY_FILE", default="")
# Days a live carrier has to pass a full certification again after the drift watch saw it drift.
RECERTIFICATION_GRACE_DAYS: int = env.int("RECERTIFICATION_GRACE_DAYS", default=30)
# Outgoing mail (invitations): a django-environ email URL, e.g. smtp+tls://user:pass@mail.example:587.
# The default writes mails to the process's output.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND: str = _email["EMAIL_BACKEND"]
EMAIL_HOST: str = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT: int = int(_email.get("EMAIL_PORT") or 25)
EMAIL_HOST_USER: str = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD: str = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS: bool = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL: bool = bool(_email.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="TMS Console <no-reply@localhost>")
# Plain http:// to such URLs (https:// only by default; the demo's simulator speaks http).
EGRESS_ALLOW_HTTP: bool = env.bool("EGRESS_ALLOW_HTTP", default=DEBUG)
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["missions.partner.api.authentication.PartnerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["missions.partner.api.permissions.HasPartnerScope"],
    "DEFAULT_THROTTLE_CLASSES": ["missions.partner.api.throttling.PartnerClientRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["tms_console.unstorable.StorableJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "tms_console.negotiation.ProblemAwareContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "missions.partner.api.pagination.CappedPageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "tms_console.problem.problem_exception_handler",
    # No "?format=" override: the media type is chosen by Accept alone, as the schema says.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# django-oauth-toolkit's default models, named so migrations can point at them.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER: dict[str, Any] = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 900,
    "REFRESH_TOKEN_EXPIRE_SECONDS": None,
    "SCOPES": {
        "tender:read": "Read tenders addressed to the carrier",
        "tender:write": "Answer tenders (accept, reject, counter)",
        "missions:read": "Read the carrier's missions",
        "missions:write": "Post mission status and autonomy-mode changes",
        "telemetry:write": "Send telemetry events",
        "telemetry:read": "Read telemetry of the carrier's missions",
        "exceptions:write": "Report mission exceptions",
        "edi:write": "Exchange EDI X12 interchanges (990, 214, 997)",
        "certification:read": "Read the carrier's certification runs, their reports and signed certificates",
        "certification:write": "Send a certification run's test webhooks and telemetry (sandbox clients only)",
    },
    "DEFAULT_SCOPES": ["tender:read", "missions:read"],
    "OAUTH2_VALIDATOR_CLASS": "missions.partner.api.oauth.PartnerOAuth2Validator",
}
# Autodiscovery finds only each app's top-level "tasks" module: name the others.
CELERY_IMPORTS = [
    *globals().get("CELERY_IMPORTS", []),
    "missions.subscriptions",
    "missions.partner.tasks",
    "missions.tendering.tasks",
    "missions.edi.tasks",
]
# Domain-event subscribers that failed are tried again from beat, with a doubling
# back-off from EVENT_RETRY_SECONDS (capped at 10 min), EVENT_RETRY_ATTEMPTS times in all.
EVENT_RETRY_SECONDS: float = env.float("EVENT_RETRY_SECONDS", default=10.0)
EVENT_RETRY_ATTEMPTS: int = env.int("EVENT_RETRY_ATTEMPTS", default=10)
# A task delivery not done this long after its event committed (the broker lost the task) is retried.
EVENT_TASK_GRACE_SECONDS: float = env.float("EVENT_TASK_GRACE_SECONDS", default=120.0)
# EDI X12 (docs/edi.md): the console's identity on the envelope (ISA05/06 when sending, ISA07/08 when
# receiving), the folder the local-folder transport drops and picks up files in, how often it looks.
EDI_SENDER_QUALIFIER: str = env.str("EDI_SENDER_QUALIFIER", default="ZZ")
EDI_SENDER_ID: str = env.str("EDI_SENDER_ID", default="TMSCONSOLE")
EDI_DIR = Path(env.str("EDI_DIR", default=str(VAR_DIR / "edi")))
EDI_POLL_SECONDS: float = env.float("EDI_POLL_SECONDS", default=5.0)
EDI_HTTP_TIMEOUT_SECONDS: float = env.float("EDI_HTTP_TIMEOUT_SECONDS", default=10.0)
globals().setdefault("CELERY_BEAT_SCHEDULE", {}).update(
    {
        "edi-folder-poll": {"task": "missions.edi.folder_poll", "schedule": EDI_POLL_SECONDS},
        "events-retry": {"task": "missions.events.retry", "schedule": EVENT_RETRY_SECONDS},
        "idempotency-purge": {"task": "missions.idempotency_purge", "schedule": 3600.0},
        "webhook-receipts-purge": {"task": "missions.webhook_receipts_purge", "schedule": 3600.0},
        # Idempotent (each warning once, one pause): hourly, so a beat restart never skips a day.
        "compliance-watch": {"task": "missions.onboarding.compliance_watch", "schedule": 3600.0},
        # Hourly as well; each carrier's sandbox is smoke-checked once a day.
        "drift-watch": {"task": "missions.onboarding.drift_watch", "schedule": 3600.0},
    }
)
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "TMS Console partner API",
    "DESCRIPTION": "The API carriers use to answer tenders, run missions and send telemetry. "
    "The server enforces exactly the bounds, enums, formats and nullability stated here. "
    "See docs/api-versioning.md for the versioning and additive-change policy.",
    "VERSION": "1.4.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "/static/vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": "/static/vendor/swagger-ui/favicon-32x32.png",
    # No validator badge: it would fetch an image from the internet.
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None, "deepLinking": True},
    "PREPROCESSING_HOOKS": ["missions.partner.api.schema.only_partner_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "missions.partner.api.schema.answers_every_operation_can_give",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OfferKindEnum": "missions.choices.OfferKind",
        "ExceptionKindEnum": "missions.choices.ExceptionKind",
        "ExceptionStatusEnum": "missions.choices.ExceptionStatus",
        "MissionStatusEnum": "missions.choices.MissionStatus",
        "TenderStatusEnum": "missions.choices.TenderStatus",
        "AutonomyModeEnum": "missions.choices.AutonomyMode",
        "CarrierMissionStatusEnum": "missions.partner.api.serializers.CARRIER_MISSION_STATUS_CHOICES",
        "OfferAnswerKindEnum": "missions.partner.api.serializers.OFFER_ANSWER_KIND_CHOICES",
        "OfferCounterKindEnum": "missions.partner.api.serializers.OFFER_COUNTER_KIND_CHOICES",
    },
}

# --- Tendering: outbound carrier calls, breaker, waterfall ----------------------
# Retries of a carrier call: attempts in all, and the full-jitter backoff base/cap.
CARRIER_RETRY_ATTEMPTS: int = env.int("CARRIER_RETRY_ATTEMPTS", default=3)
CARRIER_RETRY_BASE_SECONDS: float = env.float("CARRIER_RETRY_BASE_SECONDS", default=0.2)
CARRIER_RETRY_CAP_SECONDS: float = env.float("CARRIER_RETRY_CAP_SECONDS", default=5.0)
# Poll a push carrier for an answer when none arrived this long after sending.
CARRIER_POLL_AFTER_SECONDS: int = env.int("CARRIER_POLL_AFTER_SECONDS", default=30)
# Extra CA certificates (PEM file) to trust for carrier APIs on a private PKI.
CARRIER_CA_BUNDLE: str = env.str("CARRIER_CA_BUNDLE", default="")
# setdefault + update keeps entries other blocks add before or after this one.
globals().setdefault("CELERY_BEAT_SCHEDULE", {}).update(
    {
        "tenders-expire": {"task": "missions.tenders_expire", "schedule": 10.0},
        "circuits-probe": {"task": "missions.circuits_probe", "schedule": 5.0},
        "tenders-poll-sent": {"task": "missions.tenders_poll_sent", "schedule": 15.0},
        "tenders-reconcile": {"task": "missions.tenders_reconcile", "schedule": 30.0},
    }
)

# --- Telemetry pipeline (ingest, gaps, retention, live map, MQTT bridge) --------
# Events with a timestamp further ahead or older than these are rejected.
TELEMETRY_MAX_FUTURE_SECONDS: int = env.int("TELEMETRY_MAX_FUTURE_SECONDS", default=300)
TELEMETRY_MAX_AGE_SECONDS: int = env.int("TELEMETRY_MAX_AGE_SECONDS", default=86_400)
# Full-fidelity window frozen into a snapshot; its rows live TELEMETRY_DEDUPE_SECONDS after arrival.
TELEMETRY_WINDOW_SECONDS: int = env.int("TELEMETRY_WINDOW_SECONDS", default=300)
# How long a stream (WebSocket, MQTT bridge) trusts the mission facts it read (status, mode) before reading them again.
TELEMETRY_MISSION_CACHE_SECONDS: float = env.float("TELEMETRY_MISSION_CACHE_SECONDS", default=10.0)
# Telemetry batches one server process works on at once (0: no limit), how many more may wait for a turn,
# and for how long, before a 503 ingest-busy (missions/telemetry/admission.py).
TELEMETRY_BATCH_CONCURRENCY: int = env.int("TELEMETRY_BATCH_CONCURRENCY", default=2)
TELEMETRY_BATCH_WAITING_MAX: int = env.int("TELEMETRY_BATCH_WAITING_MAX", default=16)
TELEMETRY_BATCH_WAIT_SECONDS: float = env.float("TELEMETRY_BATCH_WAIT_SECONDS", default=5.0)
if TELEMETRY_BATCH_CONCURRENCY < 0 or TELEMETRY_BATCH_WAITING_MAX < 0 or not 0 < TELEMETRY_BATCH_WAIT_SECONDS <= 60:
    raise ImproperlyConfigured(
        "TELEMETRY_BATCH_CONCURRENCY and TELEMETRY_BATCH_WAITING_MAX must be 0 or more, "
        "and TELEMETRY_BATCH_WAIT_SECONDS more than 0 and at most 60."
    )
TELEMETRY_DEDUPE_SECONDS: int = max(env.int("TELEMETRY_DEDUPE_SECONDS", default=900), TELEMETRY_WINDOW_SECONDS)
TELEMETRY_RETENTION_DAYS: int = env.int("TELEMETRY_RETENTION_DAYS", default=30)
TELEMETRY_THIN_AFTER_DAYS: int = env.int("TELEMETRY_THIN_AFTER_DAYS", default=7)
TELEMETRY_THIN_SECONDS: int = env.int("TELEMETRY_THIN_SECONDS", default=10)
# PostgreSQL: partitions (a day of samples, an hour of the window) are created this many days ahead
# (docs/decisions/0028-telemetry-partitions.md); retention drops whole partitions.
TELEMETRY_PARTITIONS_AHEAD_DAYS: int = env.int("TELEMETRY_PARTITIONS_AHEAD_DAYS", default=2)
# Store-and-forward uploads (POST /api/v1/telemetry/backfill, NDJSON): most bytes and lines in one
# body, read incrementally and never held in memory (docs/decisions/0017-telemetry-backfill.md).
TELEMETRY_BACKFILL_MAX_BODY_BYTES: int = env.int("TELEMETRY_BACKFILL_MAX_BODY_BYTES", default=134_217_728)
TELEMETRY_BACKFILL_MAX_LINES: int = env.int("TELEMETRY_BACKFILL_MAX_LINES", default=100_000)
# Live map (docs/decisions/0011-live-map-frames.md): a frame goes out this long after the first position
# it carries (the rest of a burst rides along), and frames are at least LIVEMAP_FRAME_SECONDS apart (a cap
# on frames per second for the browsers; 0.05 at the least).
LIVEMAP_COALESCE_SECONDS: float = env.float("LIVEMAP_COALESCE_SECONDS", default=0.02)
LIVEMAP_FRAME_SECONDS: float = env.float("LIVEMAP_FRAME_SECONDS", default=0.05)
# A truck is at risk when its ETA leaves less than this before its delivery window ends
# (docs/decisions/0020-live-map-routes-and-eta.md).
LIVEMAP_AT_RISK_MARGIN_MINUTES: float = env.float("LIVEMAP_AT_RISK_MARGIN_MINUTES", default=30)
MQTT_URL: str = env.str("MQTT_URL", default="")
MQTT_USERNAME: str = env.str("MQTT_USERNAME", default="")
MQTT_PASSWORD: str = env.str("MQTT_PASSWORD", default="")
MQTT_CA_FILE: str = env.str("MQTT_CA_FILE", default="")
# The bridge's own client certificate (its SVID, docs/identity.md) for a broker that requires one.
MQTT_CLIENT_CERT_FILE: str = env.str("MQTT_CLIENT_CERT_FILE", default="")
MQTT_CLIENT_KEY_FILE: str = env.str("MQTT_CLIENT_KEY_FILE", default="")
MQTT_TOPIC_PREFIX: str = env.str("MQTT_TOPIC_PREFIX", default="tms/telemetry")
# The bridge's client id: a persistent session, so messages it had not acknowledged when it stopped
# go to the next bridge with this id. One id per bridge process; empty: random, clean session.
MQTT_CLIENT_ID: str = env.str("MQTT_CLIENT_ID", default="tms-mqtt-ingest")
CELERY_IMPORTS = [*globals().get("CELERY_IMPORTS", []), "missions.telemetry.tasks"]
CELERY_BEAT_SCHEDULE: dict[str, Any] = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "telemetry-window-prune": {"task": "missions.telemetry.window_prune", "schedule": 60.0},
    "telemetry-purge": {"task": "missions.telemetry.purge", "schedule": 3600.0},
    "telemetry-partitions": {"task": "missions.telemetry.partitions_ensure", "schedule": 3600.0},
}
if not TELEMETRY_GAP_DETECTOR_IN_BEAT:
    # A check not started within its period is dropped: the next one, a period later, does its work.
    CELERY_BEAT_SCHEDULE["telemetry-gaps"] = {
        "task": "missions.telemetry.gaps_check",
        "schedule": TELEMETRY_GAP_CHECK_SECONDS,
        "options": {"expires": TELEMETRY_GAP_CHECK_SECONDS},
    }

# --- SLA engine: evaluation schedule, burn-rate alerts, /metrics ------------------
# Burn-rate alerts need at least this many events in their long window (minimum-traffic rule).
SLA_BURN_MIN_EVENTS: int = env.int("SLA_BURN_MIN_EVENTS", default=10)
SLA_EVALUATE_SECONDS: float = env.float("SLA_EVALUATE_SECONDS", default=60.0)
# A finished mission re-evaluates its carrier unless it was evaluated this recently (beat's next run takes it in).
SLA_FINISH_EVALUATION_INTERVAL_SECONDS: float = env.float("SLA_FINISH_EVALUATION_INTERVAL_SECONDS", default=30.0)
# /metrics answers only "Authorization: Bearer <METRICS_TOKEN>"; without it, 404 unless DEBUG (the demo).
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
MIDDLEWARE = [*MIDDLEWARE, "tms_console.metrics.MetricsMiddleware"]
# Exact SLI buckets (docs/decisions/0026): on, or every evaluation recounts raw rows.
SLA_ROLLUPS: bool = env.bool("SLA_ROLLUPS", default=True)
SLA_ROLLUP_SECONDS: float = env.float("SLA_ROLLUP_SECONDS", default=10.0)
# How long a rollup waits for an id not committed yet before passing it (the daily recount catches a later one).
SLA_ROLLUP_GAP_GRACE_SECONDS: float = env.float("SLA_ROLLUP_GAP_GRACE_SECONDS", default=300.0)
SLA_ROLLUP_CATCH_UP_SECONDS: float = env.float("SLA_ROLLUP_CATCH_UP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "sla-evaluate-all": {"task": "sla.evaluate_all", "schedule": SLA_EVALUATE_SECONDS},
    "sla-rollup": {"task": "sla.rollup", "schedule": SLA_ROLLUP_SECONDS},
    "sla-recount-daily": {"task": "sla.recount_daily", "schedule": 86400.0},
}

# --- The demo's scripted incident (`make run`) ----------------------------------
# The fleet simulator (`simulate_fleet --demo`) cuts one truck's comms this many seconds after
# it starts, so the lost-comms runbook runs in front of a newcomer; "off" turns it off.
DEMO_SCENARIO: str = env.str("DEMO_SCENARIO", default="lost-comms")
DEMO_INCIDENT_VEHICLE: str = env.str("DEMO_INCIDENT_VEHICLE", default="LSA-101")
DEMO_INCIDENT_AFTER_SECONDS: float = env.float("DEMO_INCIDENT_AFTER_SECONDS", default=180.0)

# --- Paging (PagerDuty Events API v2) -------------------------------------------
PAGERDUTY_EVENTS_URL: str = env.str("PAGERDUTY_EVENTS_URL", default="")
PAGERDUTY_ROUTING_KEY: str = env.str("PAGERDUTY_ROUTING_KEY", default="")
PAGERDUTY_ATTEMPTS: int = env.int("PAGERDUTY_ATTEMPTS", default=4)
RUNBOOK_STEP_LEASE_SECONDS: int = env.int("RUNBOOK_STEP_LEASE_SECONDS", default=15)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "runbooks-tick": {"task": "runbooks.tasks.runbooks_tick", "schedule": 2.0},
}

# --- Deployment checks: OAuth 2.0 Security BCP (RFC 9700) -----------------------
# `check --deploy` warns on django-oauth-toolkit's pre-RFC 9700 defaults; the
# partner API only uses client credentials, so the compliant behaviour costs
# nothing: no implicit or password grant, no tokens in query strings, hashed
# token storage, refresh-token replay protection, https redirect URIs only.
OAUTH2_PROVIDER.update(
    {
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
        "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
    }
)

# --- Evidence: signing key, transparency log origin, checkpoints (docs/evidence.md) ---
# The private key comes from EVIDENCE_SIGNING_KEY (env, base64 seed or PEM) or this PEM file;
# never from the database or the repository. Without one, DEBUG and tests use a development
# key under VAR_DIR/keys/; production skips attestations and `manage.py check` warns.
EVIDENCE_SIGNING_KEY_FILE: str = env.str("EVIDENCE_SIGNING_KEY_FILE", default="")
# Old public keys stay published after a rotation (a directory of *.pem, and/or EVIDENCE_PUBLIC_KEYS).
EVIDENCE_PUBLIC_KEYS_DIR: str = env.str("EVIDENCE_PUBLIC_KEYS_DIR", default="")
EVIDENCE_LOG_ORIGIN: str = env.str("EVIDENCE_LOG_ORIGIN", default="tms-console.example/evidence")
EVIDENCE_CHECKPOINT_SECONDS: float = env.float("EVIDENCE_CHECKPOINT_SECONDS", default=60.0)
CELERY_IMPORTS = [*globals().get("CELERY_IMPORTS", []), "missions.evidence.tasks"]
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "evidence-checkpoint": {"task": "missions.evidence.checkpoint", "schedule": EVIDENCE_CHECKPOINT_SECONDS},
}

# --- OTA manifests (TUF / Uptane): carriers' metadata read with python-tuf's ngclient ---
# The trusted metadata of each carrier's repositories (the rollback protection) lives here.
OTA_CACHE_DIR: str = env.str("OTA_CACHE_DIR", default="") or str(VAR_DIR / "ota")
OTA_REFRESH_SECONDS: float = env.float("OTA_REFRESH_SECONDS", default=300.0)
CELERY_IMPORTS = [*globals().get("CELERY_IMPORTS", []), "missions.ota.tasks"]
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "ota-refresh": {"task": "missions.ota.refresh_all", "schedule": OTA_REFRESH_SECONDS},
}
