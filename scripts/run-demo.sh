#!/usr/bin/env bash
# The demo: a real Celery worker (queues default and ai) and celery beat, the demo set-up (which needs the worker for the
# AI drafts, routing, scoring items and the analysis), then the web server. Ctrl-C stops everything.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
shift 2 || true
PY=.venv/bin/python
# The demo is a development set-up (the settings are production's, failing closed, unless this is set).
export CXR_DEVELOPMENT="${CXR_DEVELOPMENT:-1}"
# The demo's logins need no authenticator app (CXR_SECOND_FACTOR=1 to try the second factor; production requires it).
export CXR_SECOND_FACTOR="${CXR_SECOND_FACTOR:-0}"
VAR=${CXR_VAR_DIR:-var}
mkdir -p "$VAR"
$PY -m celery -A config worker -Q default,ai --concurrency 1 --loglevel INFO --without-gossip --without-mingle \
  >"$VAR/worker.log" 2>&1 &
WORKER=$!
# celery beat: the periodic tasks (the nightly audit-chain check, scoring items of cases that became ready)
$PY -m celery -A config beat --loglevel INFO --schedule "$VAR/celerybeat-schedule" >"$VAR/beat.log" 2>&1 &
BEAT=$!
# The DICOM listener (port 11112, AE title CXRTRIAL): a PACS or `storescu` sends films to the live trial's sites by
# the AE titles setup_demo gives them (PACS_A, PACS_B, PACS_C).
$PY manage.py dicom_listener --port "${CXR_DICOM_PORT:-11112}" >"$VAR/dicom.log" 2>&1 &
DICOM=$!
trap 'kill $WORKER $BEAT $DICOM ${ARRIVALS:-} 2>/dev/null || true' EXIT INT TERM
echo "Celery worker (pid $WORKER, log $VAR/worker.log) and beat (pid $BEAT, log $VAR/beat.log) started."
$PY manage.py setup_demo "$@"
# The live trial is prospective: films keep arriving at its three sites (a PACS stand-in), a few seconds to a minute
# apart, and appear on the readers' worklists as they are drafted (CXR_DEMO_ARRIVALS=0 turns it off).
if [ "${CXR_DEMO_ARRIVALS:-1}" != "0" ]; then
  $PY manage.py simulate_arrivals --trial demo-cxr --min-seconds 5 --max-seconds 60 >"$VAR/arrivals.log" 2>&1 &
  ARRIVALS=$!
  echo "Arrival simulator (pid $ARRIVALS, log $VAR/arrivals.log) started: new films reach demo-cxr as you watch."
fi
echo "Open http://$HOST:$PORT/ with one of the logins above."
$PY manage.py runserver "$HOST:$PORT" --noreload
