# The two commands of the README: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# CPU-sized torch by default; a GPU machine sets TORCH_SPEC (e.g. TORCH_SPEC=torch) for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# The settings fail closed (production: no debug, no development key) unless a development set-up is asked for;
# everything run from here (migrate, the demo, the tests) is one.
export CXR_DEVELOPMENT ?= 1

.PHONY: demo test test-smoke lint install system-deps migrate worker serve clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q '$(TORCH_SPEC)'
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

system-deps:
	bash scripts/system-deps.sh

migrate: install
	$(PY) manage.py migrate --noinput

# The embedded default (SQLite + a broker-less Celery transport): a real Celery worker, the demo trials
# (the first time, the demo model is trained: at most 15 minutes), then the web server (Ctrl-C stops all).
DEMO_ARGS ?=
demo: migrate
	$(PY) manage.py collectstatic --noinput -v 0
	bash scripts/run-demo.sh $(HOST) $(PORT) $(DEMO_ARGS)

# The rules a machine checks: ruff (style, banned APIs), import-linter (layers, pure modules), Biome (static/js).
lint: install
	bash scripts/system-deps.sh --check-or-install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	bash scripts/lint-js.sh

# The whole suite, on whatever DATABASE_URL / CELERY_BROKER_URL say (the embedded default when unset), after the lint.
test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

# A quick pass on the embedded default (SQLite, filesystem broker), whatever the environment says.
test-smoke: install
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m pytest -q tests/trial $(PYTEST_ARGS)

clean:
	rm -rf var/ .pytest_cache node_modules
