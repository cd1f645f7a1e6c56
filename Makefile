# Two commands for everyone: `make run` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv is rebuilt only when pyproject.toml changes (the stamp carries its hash).
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
EXTRAS ?= worker,dev
ARGS ?=
# Test files run side by side (pytest-xdist): two per core, at most 4. Many tests wait (a lease to
# lapse, a server to restart) while another file can use the core: on 2 cores 4 workers ran the
# suite in 503 s, 2 in 573 s. A file stays on one worker (--dist loadfile), so a module's fixtures
# boot once, and files are handed out in conftest's order (long worker modules first).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= $(shell python3 -c 'import os; print(min(4, 2 * len(os.sched_getaffinity(0))))')

.PHONY: run test venv lint bench-ingest clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "installing rdio-api[$(EXTRAS)] into $(VENV) (the worker extra is large: torch + whisperx)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP) config.yaml
	$(VENV)/bin/rdio-api up $(ARGS)

# First run: a short config.yaml with fresh keys (rdio_api/first_config.py); samples of everything
# else stay in config.example.yaml.
config.yaml: | $(STAMP)
	@$(VENV)/bin/rdio-api init config.yaml

# The system packages its tests need (Chromium, promtool): installed as root, else one command to run.
test: $(STAMP)
	@scripts/test-deps.sh
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench-ingest: $(STAMP)
	$(PY) bench/ingest.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
