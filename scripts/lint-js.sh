#!/usr/bin/env bash
# Lints the browser code (static/js) with Biome, pinned in package.json / package-lock.json and installed into
# ./node_modules (never globally) the first time, or again when the pinned version changes. Exits non-zero on
# any finding, warnings included. Extra arguments go to `biome lint` (e.g. --write to apply safe fixes).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v npm >/dev/null 2>&1 || { echo "lint-js: npm is not installed (Debian: apt-get install npm)." >&2; exit 2; }

wanted=$(node -p "require('./package.json').devDependencies['@biomejs/biome']")
installed=$(node -p "try { require('./node_modules/@biomejs/biome/package.json').version } catch (e) { '' }")
if [ "$installed" != "$wanted" ] || [ ! -x node_modules/.bin/biome ]; then
  echo "lint-js: installing @biomejs/biome $wanted into ./node_modules" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

exec node_modules/.bin/biome lint --error-on-warnings "$@" static/js
