#!/usr/bin/env bash
# System packages the tests need beyond Python, from Debian's packages only: R with lme4, lmerTest,
# ordinal, pROC, psych and rpact (our statistics are checked against them), DCMTK (the ingest benchmark) and
# Chromium (the real-browser tests drive it through Playwright; no browser is ever downloaded), Orthanc with its
# DICOMweb plugin (the real PACS of the tests; GPL, used at arm's length as a separate program) and
# docker-compose (validates docker/compose.yaml; no engine needed), and npm (installs the pinned JS linter, Biome).
# --check-or-install: install only what is missing, and only where we may (root with apt-get).
set -euo pipefail
PACKAGES=(r-base-core r-cran-lme4 r-cran-lmertest r-cran-ordinal r-cran-proc r-cran-psych r-cran-rpact dcmtk chromium docker-compose orthanc orthanc-dicomweb)

missing() {
  command -v Rscript >/dev/null 2>&1 || { echo yes; return; }
  Rscript -e 'for (p in c("lme4","lmerTest","ordinal","pROC","psych","rpact")) if (!requireNamespace(p, quietly=TRUE)) quit(status=1)' \
    >/dev/null 2>&1 || { echo yes; return; }
  command -v dcmj2pnm >/dev/null 2>&1 || { echo yes; return; }
  [ -x /usr/bin/chromium ] || { echo yes; return; }
  command -v docker-compose >/dev/null 2>&1 || { echo yes; return; }
  command -v npm >/dev/null 2>&1 || { echo yes; return; }
  command -v Orthanc >/dev/null 2>&1 || { echo yes; return; }
  [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { echo yes; return; }
  echo no
}

if [ "${1:-}" = "--check-or-install" ] && [ "$(missing)" = "no" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages for the R cross-checks: install ${PACKAGES[*]} (Debian/Ubuntu), then re-run." >&2
  exit 0  # the r_oracle tests will then fail with a clear message, naming what is missing
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
# npm only where there is none (a machine may have its own Node.js; Debian's npm would replace it)
command -v npm >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends npm >/dev/null
