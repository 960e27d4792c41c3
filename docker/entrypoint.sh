#!/bin/sh
# migrate: the migrations (as the tables' owner), then the application role's grants (CXR_DB_APP_ROLE);
# web: gunicorn (as the application role; migrates first only where no migrate step runs, CXR_MIGRATE_ON_START=1);
# worker / ai-worker: Celery queues; beat: the periodic tasks (one per deployment); dicom: the DICOM listener.
set -e
case "$1" in
  migrate)
    python manage.py migrate --noinput
    if [ -n "${CXR_DB_APP_ROLE:-}" ]; then
      python manage.py grant_app_role "$CXR_DB_APP_ROLE"
    fi
    ;;
  web)
    if [ "${CXR_MIGRATE_ON_START:-0}" = "1" ]; then
      python manage.py migrate --noinput
    fi
    exec gunicorn config.wsgi:application --bind 0.0.0.0:8000 --workers "${WEB_WORKERS:-3}" \
      --timeout 120 --access-logfile -
    ;;
  worker)
    exec celery -A config worker -Q default --concurrency "${WORKER_CONCURRENCY:-2}" --loglevel INFO
    ;;
  ai-worker)
    # One model per process: concurrency 1 per GPU (add workers, not threads, to scale out).
    exec celery -A config worker -Q ai --concurrency 1 --prefetch-multiplier 1 --loglevel INFO
    ;;
  beat)
    exec celery -A config beat --loglevel INFO --schedule /var/lib/cxr-trial/beat/celerybeat-schedule
    ;;
  dicom)
    # The DICOM listener: C-STORE from the sites' PACS (their AE titles are set per site on the Conduct page).
    exec python manage.py dicom_listener --host 0.0.0.0 --port "${CXR_DICOM_PORT:-11112}"
    ;;
  *)
    exec "$@"
    ;;
esac
