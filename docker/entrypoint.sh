#!/bin/sh
# web: migrate (once, under the database's own lock) then gunicorn; worker / ai-worker: Celery queues;
# beat: the periodic tasks (one per deployment).
set -e
case "$1" in
  web)
    python manage.py migrate --noinput
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
  *)
    exec "$@"
    ;;
esac
