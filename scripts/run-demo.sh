#!/usr/bin/env bash
# Runs a real Celery worker (queues default and ai) beside the web server; stopping one stops both.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=.venv/bin/python
$PY -m celery -A config worker -Q default,ai --concurrency 1 --loglevel INFO --without-gossip --without-mingle \
  >"${CXR_VAR_DIR:-var}/worker.log" 2>&1 &
WORKER=$!
trap 'kill $WORKER 2>/dev/null || true' EXIT INT TERM
echo "Celery worker started (pid $WORKER, log ${CXR_VAR_DIR:-var}/worker.log)."
echo "Open http://$HOST:$PORT/ — logins are printed above."
$PY manage.py runserver "$HOST:$PORT" --noreload
