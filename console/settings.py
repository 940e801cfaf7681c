"""Settings: the one place that reads the environment.

Every variable is optional; unset ones give the embedded defaults of
`make run` (SQLite, a broker on the local disk, local directories as region
stores, the built-in key service). See README "Configuration".
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
env = os.environ


def env_bool(name, default):
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DATA_DIR = Path(env.get("CLOUD_BACKUP_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "dev-only-not-secret-" + "x" * 40
ALLOWED_HOSTS = [h for h in env.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "console",
    "vaults",
    "replication",
    "restore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out login
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one user, or from one
# client address, logins are refused until AXES_COOLOFF_TIME has passed since the last one, or an
# operator unlocks (admin -> Access attempts, or `manage.py axes_reset_username USER` / `axes_reset_ip IP`).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(env.get("CLOUD_BACKUP_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(env.get("CLOUD_BACKUP_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "console.context_processors.console",
            ],
        },
    },
]

# Database: PostgreSQL through psycopg 3 in a real deployment, SQLite embedded.
DATABASES = {
    "default": dj_database_url.parse(
        env.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'console.sqlite3'}",
        conn_max_age=int(env.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
# Test runs name their own database so that several can run side by side.
_test_db = env.get("TEST_DATABASE_NAME", "")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so a worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"{_test_db or 'test-console'}.sqlite3")}
    # Writers take the lock when their transaction starts, so a busy worker makes others wait
    # (up to the timeout) instead of failing at once with "database is locked"; WAL lets readers go on.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )
elif _test_db:
    DATABASES["default"]["TEST"] = {"NAME": _test_db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Security: strict CSP (no inline script or style), secure cookies off DEBUG.
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(env.get("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Rule B3: charges are shown in this currency; prices are per region (admin -> Regions).
BILLING_CURRENCY = env.get("BILLING_CURRENCY", "USD")

# Celery: Redis in a real deployment. Embedded: kombu's SQLAlchemy transport on a SQLite file, where a
# message is a row written in one transaction, so a worker never reads half of one (kombu's filesystem
# transport could, and its JSONDecodeError ended the worker). A writer waits up to 30 s for the file's lock.
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{DATA_DIR / 'broker.sqlite3'}?timeout=30"
# Stopping a worker (SIGTERM, with REMAP_SIGTERM=SIGQUIT in its environment as `make run` sets it): its
# running jobs get this long to finish, then each hands its job back to the queue (console/jobs.py).
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(env.get("CLOUD_BACKUP_WORKER_STOP_SECONDS", "8"))
CELERY_TASK_DEFAULT_QUEUE = env.get("CELERY_DEFAULT_QUEUE", "console")
# Replication tasks run on a queue per destination region, so workers can sit next to its store.
REPLICATION_QUEUE_TEMPLATE = env.get("REPLICATION_QUEUE_TEMPLATE", "replication.{region}")

# Region object stores: a local directory per region, or a bucket per region
# on an S3-compatible endpoint. A region's own row in the admin overrides this.
OBJECT_STORE = {
    "backend": env.get("OBJECT_STORE_BACKEND", "local"),
    "root": str(Path(env.get("OBJECT_STORE_ROOT", DATA_DIR / "regions")).resolve()),
    "endpoint_url": env.get("S3_ENDPOINT_URL", ""),
    "bucket_template": env.get("S3_BUCKET_TEMPLATE", "cloud-backup-{region}"),
    "access_key": env.get("S3_ACCESS_KEY_ID", ""),
    "secret_key": env.get("S3_SECRET_ACCESS_KEY", ""),
    "addressing_style": env.get("S3_ADDRESSING_STYLE", "path"),
    # Storage class of archive-tier packs (rule P5); Glacier Instant Retrieval reads without a restore step.
    "archive_storage_class": env.get("S3_ARCHIVE_STORAGE_CLASS", "GLACIER_IR"),
}

# Key providers (rule V4). Cloud Backup-managed keys derive from a service
# master secret kept outside the database; KMS is the built-in key service
# ("local") or a KMS API per region through boto3 ("aws").
# Directories (colon-separated) under which each account has its own, `<root>/<account slug>/`, where
# its backup sources and restore targets must lie (vaults/objectstore.py: path_refusal). Without them
# any directory but the service's own data and the host's system areas is allowed, which is safe only
# with one tenant: that holds on the embedded SQLite default, or where CLOUD_BACKUP_SINGLE_TENANT=1
# says so; a deployment on DATABASE_URL otherwise refuses every path until roots are set (rule T2).
BACKUP_PATH_ROOTS = [p for p in env.get("BACKUP_PATH_ROOTS", "").split(":") if p]
SINGLE_TENANT = env_bool("CLOUD_BACKUP_SINGLE_TENANT", not env.get("DATABASE_URL"))
MASTER_SECRET = env.get("CLOUD_BACKUP_MASTER_SECRET", "")
MASTER_SECRET_FILE = Path(env.get("CLOUD_BACKUP_MASTER_SECRET_FILE", DATA_DIR / "secrets" / "master.key"))
# The region whose object store (as OBJECT_STORE's defaults name it) keeps the audit log's head outside the
# database (vaults/services/audit_head.py).
AUDIT_HEAD_REGION = env.get("AUDIT_HEAD_REGION", "cn-hangzhou")
KMS = {
    "backend": env.get("KMS_BACKEND", "local"),
    "local_root": str(Path(env.get("KMS_LOCAL_ROOT", DATA_DIR / "kms")).resolve()),
    "endpoint_url": env.get("KMS_ENDPOINT_URL", ""),
    # The region name requests are signed for; empty means the region's own code.
    "signing_region": env.get("KMS_SIGNING_REGION", ""),
    "access_key": env.get("KMS_ACCESS_KEY_ID", ""),
    "secret_key": env.get("KMS_SECRET_ACCESS_KEY", ""),
}

VAULTS_PER_PAGE = 25
POINTS_PER_PAGE = 50

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.get("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
