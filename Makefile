# Two commands do all the set-up: `make run` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Django 6 needs Python 3.12 or newer: the first one found here is used for the virtual environment.
PYTHON ?= $(shell for p in python3.13 python3.12 python3 $$HOME/.pyenv/versions/3.13*/bin/python3 $$HOME/.pyenv/versions/3.12*/bin/python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: run test lint bench clean

$(VENV)/.installed-run: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (Django 6)."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The web server and one worker on every queue with the periodic tasks embedded; console/supervise.py
# starts the worker again when it dies (after a growing pause if it keeps dying) and Ctrl-C stops both.
run: $(VENV)/.installed-run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo "Console: http://127.0.0.1:$(PORT)/  (Ctrl-C stops the console and the worker)"
	@$(PY) -P console/supervise.py --web '$(PY) manage.py runserver --noreload 127.0.0.1:$(PORT)' \
	  --worker 'env REMAP_SIGTERM=SIGQUIT $(VENV)/bin/celery -A console worker -Q "$$($(PY) manage.py worker_queues)" --beat --schedule=var/celerybeat-schedule --loglevel=INFO --concurrency=2'

# The browser tests drive Debian's Chromium (no browser download): installed here when this is root on
# Debian, else `make test` stops at once with the command to run. BROWSER_TESTS=0 skips the check.
CHROMIUM := /usr/bin/chromium
.PHONY: browser
browser:
	@test "$(BROWSER_TESTS)" = 0 || test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests (tests/e2e)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "The browser tests (tests/e2e) need Debian's Chromium at $(CHROMIUM): run 'sudo apt-get install chromium'"; \
	    echo "(or BROWSER_TESTS=0 make test PYTEST_ARGS='-m \"not e2e\"' to leave them out)"; exit 1; \
	  fi; }

test: $(VENV)/.installed-test browser
	@eval "$$($(PY) tests/detect_services.py)" && $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var staticfiles

bench: $(VENV)/.installed-test
	$(PY) tests/bench/bench_backup.py $(BENCH_ARGS)
	$(PY) tests/bench/bench_replication.py $(BENCH_ARGS) $(BENCH_REPLICATION_ARGS)
	$(PY) tests/bench/bench_restore.py $(BENCH_ARGS)

# Pages at scale (1,000 vaults, 100,000 points) on PostgreSQL: DATABASE_URL's server, default the local one.
.PHONY: bench-pages
bench-pages: $(VENV)/.installed-test
	$(PY) tests/bench/bench_pages.py

# 20 simulated users clicking through the console while a sync and a backup run (web server and worker
# as real processes, loopback only): errors, p50/p99 page times, the sync's and the backup's slowdown.
.PHONY: bench-load
bench-load: $(VENV)/.installed-test
	$(PY) tests/bench/bench_load.py $(BENCH_ARGS)

# Replication: full sync, incremental sync, and lag with a real worker (one JSON line per figure).
# BENCH_ARGS=--size-mb N is shared with `bench`; BENCH_REPLICATION_ARGS="--lag-seconds 30" for a quick run.
.PHONY: bench-replication
bench-replication: $(VENV)/.installed-test
	$(PY) tests/bench/bench_replication.py $(BENCH_ARGS) $(BENCH_REPLICATION_ARGS)
