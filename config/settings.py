"""All settings, read from the environment (12-factor); with nothing set, a self-contained development setup."""
import os
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

# Where the embedded default keeps its state (database file, broker folders, media).
VAR_DIR = Path(env("CXR_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEVELOPMENT_SECRET_KEY = "cxr-trial-development-key-never-use-in-production"
# Fail closed: production unless a development set-up is asked for explicitly (CXR_DEVELOPMENT=1: the Makefile, the
# demo script and the test runner set it). Production has no debug page, no development key and no demo app.
DEVELOPMENT = env.bool("CXR_DEVELOPMENT", default=False)
if DEVELOPMENT and env.bool("CXR_PRODUCTION", default=False):
    raise ImproperlyConfigured("CXR_DEVELOPMENT and CXR_PRODUCTION are both set: choose one.")
PRODUCTION = not DEVELOPMENT
SECRET_KEY = env("DJANGO_SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if DEVELOPMENT else "")
if PRODUCTION and (SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 50):
    # A trial's sessions, CSRF tokens and de-identification UIDs all hang on this key.
    raise ImproperlyConfigured(
        "Production settings (the default) need a long random DJANGO_SECRET_KEY, and it is missing, the development "
        "key or shorter than 50 characters. For a development set-up on your own machine set CXR_DEVELOPMENT=1."
    )
# The audit log's key (trial.audit: the HMAC of the hash chain, of the records' state hashes and of the anchor lines).
# It lives with the application, never in the database, so that whoever can write the database cannot forge a chain
# that verifies. From the environment or, better, a file (a container secret); production refuses to start without.
DEVELOPMENT_AUDIT_KEY = "cxr-trial-development-audit-key-never-use-in-production"
_audit_key_file = env("CXR_AUDIT_KEY_FILE", default="")
AUDIT_KEY = (Path(_audit_key_file).read_text().strip() if _audit_key_file
             else env("CXR_AUDIT_KEY", default=DEVELOPMENT_AUDIT_KEY if DEVELOPMENT else ""))
if PRODUCTION and (AUDIT_KEY == DEVELOPMENT_AUDIT_KEY or len(AUDIT_KEY) < 32):
    raise ImproperlyConfigured(
        "Production settings need an audit key of 32+ random characters (CXR_AUDIT_KEY, or CXR_AUDIT_KEY_FILE naming "
        "a file that holds it), and it is missing, the development key or shorter. Keep it out of the database and "
        "its backups. For a development set-up on your own machine set CXR_DEVELOPMENT=1."
    )
# Where the audit chain's head is appended after every commit that wrote events (and by verify_audit): a file the
# database cannot reach. Empty: VAR_DIR/audit-anchor-<database name>.jsonl.
AUDIT_ANCHOR_FILE = env("CXR_AUDIT_ANCHOR_FILE", default="")
AUDIT_ANCHOR_ON_COMMIT = env.bool("CXR_AUDIT_ANCHOR_ON_COMMIT", default=True)
DEBUG = DEVELOPMENT and env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The reverse proxies in front of the web process (addresses or networks, e.g. the TLS proxy of docker/compose.yaml).
# X-Forwarded-For and X-Forwarded-Proto are believed only when the connection comes from one of them: the client
# address that login throttling counts, and whether the request came over HTTPS.
CXR_TRUSTED_PROXIES = env.list("CXR_TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    # Second factor (django-otp, Unlicense): TOTP devices and their recovery codes (static tokens). DRF's authtoken
    # is gone: API tokens are trial.ApiToken (hashed, expiring, scoped to one trial).
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "crispy_forms",
    "crispy_bootstrap5",
    "bootstrap",  # django-bootstrap-static: Bootstrap 5 served from our own static files
    "core",
    "trial",
    "ai",
    "reading",
    "scoring",
    "stats",
    "evaluation",
]
# The demo app (its model trainer, phantoms and the demo trials): development, demo and test settings only; the
# production image does not even carry its code.
CXR_DEMO = env.bool("CXR_DEMO", default=not PRODUCTION)
if CXR_DEMO:
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "core.security.TrustedProxyMiddleware",  # first: forwarded headers from anyone but a trusted proxy are dropped
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "core.sessions.IdleTimeoutMiddleware",  # a session that saw no request for CXR_IDLE_TIMEOUT_MINUTES ends
    "core.otp.SecondFactorMiddleware",  # who needs a second factor and has not given it goes to that page first
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cxr-trial.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker process share the file: wait for a lock instead of failing,
    # and take the write lock at BEGIN so select_for_update-style sections serialize.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
    # A file, not memory, so that a worker process started by a test sees the test database; one per
    # test process, so that two test runs on one checkout never share (and delete) each other's.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-cxr-trial-{os.getpid()}.sqlite3")}
else:
    # Opening a PostgreSQL connection per request costs more than the request itself (bench/reading.py:
    # /healthz 33 → 4 ms): production may set DB_CONN_MAX_AGE=60. Health checks drop a connection the
    # server closed (a restart) before use. Not the default yet: with persistent connections the
    # killed-worker redelivery test did not finish (to be understood first).
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # psycopg 3: parameters bound on the server, and a statement run a few times on a connection is prepared by
    # psycopg itself (planning the reading steps' joins took PostgreSQL longer than running them). Behind a
    # transaction-pooling proxy (PgBouncer in transaction mode) set DB_PREPARED_STATEMENTS=0: a statement prepared
    # on one server connection is not on the next.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "server_side_binding": True,
        "prepare_threshold": 5 if env.bool("DB_PREPARED_STATEMENTS", default=True) else None,
    })
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Shared by all web processes in production (login throttling counts failures here).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"]["BACKEND"] = "core.cache.RedisCache"  # one Redis client per pool, not per operation
# Sessions are read on every request: from the shared cache when there is one (written through to the
# database, so a cache restart logs nobody out; expiry and logout hold as with the database alone). Not with
# the in-process default cache: another web process would still find a session that was logged out.
_SHARED_CACHE = CACHES["default"]["BACKEND"] not in ("django.core.cache.backends.locmem.LocMemCache",
                                                     "django.core.cache.backends.dummy.DummyCache")
SESSION_ENGINE = env("SESSION_ENGINE", default="django.contrib.sessions.backends.cached_db" if _SHARED_CACHE
                     else "django.contrib.sessions.backends.db")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "trial:home"
LOGOUT_REDIRECT_URL = "login"
# Who must give a second factor (a dotted path to `f(user) -> bool`): investigators, statisticians, seniors and staff
# always; readers and experts where their trial asks for it (Trial.second_factor_for_all).
CXR_SECOND_FACTOR_POLICY = "trial.access.second_factor_required"
# The demo (a development set-up on one's own machine) may run without a second factor, so that a newcomer needs no
# authenticator app; production cannot turn it off.
CXR_SECOND_FACTOR = env.bool("CXR_SECOND_FACTOR", default=True)
if not CXR_SECOND_FACTOR and PRODUCTION:
    raise ImproperlyConfigured("CXR_SECOND_FACTOR=0 is for a development set-up only (CXR_DEVELOPMENT=1).")
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="CXR-Trial")
CXR_RECOVERY_CODES = 10  # one-time recovery codes (django-otp static tokens) given at enrolment
# Reading and scoring stations are shared: a session that saw no request for this long is signed out (0: never).
# The reading screen's heartbeat is sent only while the reader is active, so an idle station does time out.
CXR_IDLE_TIMEOUT_MINUTES = env.int("CXR_IDLE_TIMEOUT_MINUTES", default=30)
# Invitations: bound to the invited e-mail address, used once, and valid this long.
CXR_INVITATION_DAYS = env.int("CXR_INVITATION_DAYS", default=7)
# The DICOM listener (manage.py dicom_listener, trial.listener): its address, AE title and limits.
CXR_DICOM_HOST = env("CXR_DICOM_HOST", default="127.0.0.1")
CXR_DICOM_PORT = env.int("CXR_DICOM_PORT", default=11112)
CXR_DICOM_AE_TITLE = env("CXR_DICOM_AE_TITLE", default="CXRTRIAL")
CXR_DICOM_MAX_ASSOCIATIONS = env.int("CXR_DICOM_MAX_ASSOCIATIONS", default=8)
CXR_DICOM_MAX_PDU = env.int("CXR_DICOM_MAX_PDU", default=262_144)
CXR_DICOM_TIMEOUT = env.int("CXR_DICOM_TIMEOUT", default=30)              # association and DIMSE messages
CXR_DICOM_NETWORK_TIMEOUT = env.int("CXR_DICOM_NETWORK_TIMEOUT", default=60)
# Reports of record back to the hospital (trial.outbox): retries with exponential backoff, then "failed" (resend by
# hand on the outbox page); a FHIR server reached over plain HTTP only where a site allows it (tests, a local loop).
CXR_OUTBOX_MAX_ATTEMPTS = env.int("CXR_OUTBOX_MAX_ATTEMPTS", default=10)
CXR_OUTBOX_BACKOFF_SECONDS = env.int("CXR_OUTBOX_BACKOFF_SECONDS", default=30)       # 30 s, 1 min, 2 min … ≤ 1 h
CXR_OUTBOX_TIMEOUT = env.int("CXR_OUTBOX_TIMEOUT", default=30)
CXR_ALLOW_PLAIN_HTTP_DESTINATIONS = env.bool("CXR_ALLOW_PLAIN_HTTP_DESTINATIONS", default=False)
CXR_FHIR_IDENTIFIER_SYSTEM = env("CXR_FHIR_IDENTIFIER_SYSTEM", default="urn:cxr-trial:report")
# Optional DICOM TLS (PS3.15 B.1) for the listener and for reports sent to a PACS whose site asks for it: PEM files.
CXR_DICOM_TLS_CERT = env("CXR_DICOM_TLS_CERT", default="")
CXR_DICOM_TLS_KEY = env("CXR_DICOM_TLS_KEY", default="")
CXR_DICOM_TLS_CA = env("CXR_DICOM_TLS_CA", default="")
# The listener speaks TLS only (no plain association) when this is set; it needs CXR_DICOM_TLS_CERT (and, for mutual
# TLS, CXR_DICOM_TLS_CA: then only callers with a certificate that CA signed may associate).
CXR_DICOM_LISTENER_TLS = env.bool("CXR_DICOM_LISTENER_TLS", default=False)
# A prospective trial's worklist asks for new cases this often while it is visible (seconds).
CXR_WORKLIST_REFRESH_SECONDS = env.int("CXR_WORKLIST_REFRESH_SECONDS", default=10)
# API tokens (trial.ApiToken): stored hashed, scoped to one trial, and expiring after at most this many days.
CXR_API_TOKEN_MAX_DAYS = env.int("CXR_API_TOKEN_MAX_DAYS", default=90)
CXR_API_TOKEN_DEFAULT_DAYS = env.int("CXR_API_TOKEN_DEFAULT_DAYS", default=30)
# URL arguments that name an object of one trial without naming the trial: the trial it belongs to (a token reaches
# only its own trial's objects). An API URL with other arguments and no trial code is refused to tokens.
CXR_API_TOKEN_OBJECT_SCOPES = {
    "read_id": ("reading.Read", "pk", "trial_id"),
    "key": ("scoring.Assignment", "key", "item__trial_id"),
}
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 3600)

LANGUAGE_CODE = "en"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env("CXR_MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    # Case images are never served from a public URL: views stream them after a permission check.
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},  # under MEDIA_ROOT
    "staticfiles": {
        "BACKEND": "core.storage.StaticStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Upload limits: one radiograph rarely exceeds 30 MB; the limit protects memory and disk.
CXR_MAX_DICOM_BYTES = env.int("CXR_MAX_DICOM_BYTES", default=64 * 1024 * 1024)
# Images in from a hospital system (the DICOM listener, STOW-RS): per site and minute, beyond which the sender is told
# to retry later (HTTP 429; DIMSE "out of resources"); a STOW-RS request's size and number of instances.
CXR_INBOUND_PER_MINUTE = env.int("CXR_INBOUND_PER_MINUTE", default=600)
CXR_STOW_MAX_INSTANCES = env.int("CXR_STOW_MAX_INSTANCES", default=20)
CXR_STOW_MAX_BYTES = env.int("CXR_STOW_MAX_BYTES", default=4 * CXR_MAX_DICOM_BYTES)
# Rows × columns (× samples × frames) of one radiograph, checked before anything is decoded: a 43 × 43 cm DR detector
# at 100 µm is ~18.5 megapixels, so 25 leaves headroom while a decompression bomb is refused (trial.dicom.MAX_PIXELS).
CXR_MAX_PIXELS = env.int("CXR_MAX_PIXELS", default=25_000_000)
# No request body over CXR_MAX_DICOM_BYTES reaches the disk, on any URL (Django's CSRF check would otherwise write a
# POSTed body to a temporary file before any view runs).
FILE_UPLOAD_HANDLERS = [
    "core.uploads.BodyLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Root for de-identified UIDs: "2.25." makes UUID-derived UIDs valid without an organisation root.
CXR_UID_ROOT = env("CXR_UID_ROOT", default="2.25.")

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trial.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CXR-Trial API",
    "DESCRIPTION": "Randomized trials of AI-assisted chest X-ray reporting.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"TrialStatusEnum": "trial.models.Status", "RoleEnum": "trial.models.Role",
                            "ReadStatusEnum": "reading.models.ReadStatus"},
}

# Celery. Embedded default: kombu's filesystem transport, a real broker-less queue shared by the web
# process and a real worker process through a folder (no server to install).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis: a task whose worker died unacknowledged is delivered again after this many seconds; it
    # must exceed the longest task (a draft on a CPU: minutes).
    # Priorities (core.celery.PRIORITY_*): kombu keeps a list per step and serves the lowest number first (on Redis
    # 0 is the highest priority), so a live trial's arriving case is drafted before a reader study's backlog.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
                                       "queue_order_strategy": "priority", "sep": ":",
                                       "priority_steps": list(range(10))}
    CELERY_TASK_DEFAULT_PRIORITY = 5
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = ("core.celery.route_task",)  # each task names its queue in @core.celery.task (the model's: "ai")
# Periodic work (celery beat: docker compose's `beat` service, and the demo, start it).
CELERY_BEAT_SCHEDULE = {
    # The audit trail verified every night (chain, anchor, records); a failure is logged and e-mailed to the
    # investigators of the trials it touches.
    "verify-audit-chain": {"task": "trial.tasks.verify_audit_chain",
                           "schedule": crontab(hour=env.int("AUDIT_VERIFY_HOUR", default=2), minute=30)},
    # Scoring items of cases that became ready since (a late sign-off, a corrected report).
    "build-ready-scoring-items": {"task": "scoring.tasks.build_open_trials",
                                  "schedule": env.int("SCORING_BUILD_EVERY_SECONDS", default=300)},
    # Readers with a roster go on and off duty by it (each site's time zone).
    "apply-rosters": {"task": "trial.tasks.apply_rosters", "schedule": 60},
    # Cases of prospective trials still waiting for a reader of their arm (arrival and duty changes route at once).
    "route-waiting-cases": {"task": "reading.tasks.route_open_trials", "schedule": 60},
    # Drafts whose task was lost (the broker was down when they were requested) are sent again.
    "requeue-pending-drafts": {"task": "ai.tasks.requeue_pending", "schedule": 600},
    # Reports of record whose delivery to the hospital is due again (a retry) or whose task was lost.
    "deliver-due-reports": {"task": "trial.tasks.deliver_due_reports", "schedule": 60},
    # Staged images (no frontal image of their study yet) whose study settled: screened out (their task was lost).
    "settle-staged-studies": {"task": "trial.tasks.settle_staged_studies", "schedule": 60},
    # Files an enrolment interrupted between writing them and committing its rows left behind.
    "remove-orphan-files": {"task": "trial.tasks.remove_orphan_files", "schedule": crontab(hour=3, minute=15)},
    # Viewer images of cases whose task was lost.
    "prepare-missing-viewer-images": {"task": "trial.tasks.prepare_missing_viewer_images", "schedule": 900},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="cxr-trial@localhost")

SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)  # a working day, then log in again
SESSION_SAVE_EVERY_REQUEST = False
# Login throttling (core.security): failures are counted per normalized username and per client address; beyond
# LOGIN_MAX_FAILURES each further failure doubles the wait (from LOGIN_BACKOFF_SECONDS up to LOGIN_MAX_BACKOFF_SECONDS)
# before the next try is looked at. A browser that has logged in to the account before (a signed cookie) is counted on
# its own, so that nobody can keep a person out of their account by failing logins in their name.
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_BACKOFF_SECONDS = env.int("LOGIN_BACKOFF_SECONDS", default=2)
LOGIN_MAX_BACKOFF_SECONDS = env.int("LOGIN_MAX_BACKOFF_SECONDS", default=env.int("LOGIN_LOCKOUT_SECONDS",
                                                                                 default=15 * 60))
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container's own health check speaks plain HTTP to itself
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # Preloading is a promise about the whole domain, hard to take back: the site opts in.
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # preload is opt-in, on purpose
    # Believed only from CXR_TRUSTED_PROXIES: core.security.TrustedProxyMiddleware drops it from anyone else.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
