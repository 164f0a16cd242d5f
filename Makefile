# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint schemas bench bench-memory clean tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "nps-pipeline needs Python 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Start the embedded broker, the worker and the feedback simulator (Ctrl-C stops all).
run: $(STAMP)
	$(BIN)/nps-pipeline run

## Real Prometheus, promtool, Alertmanager (and docker-compose, to validate the compose
## file; headless Chromium and its WebDriver, for the live page) for the tests: Debian
## packages, installed when missing (needs root).
TOOLS := promtool prometheus prometheus-alertmanager amtool docker-compose chromium chromedriver
PACKAGES := prometheus prometheus-alertmanager docker-compose chromium chromium-driver
tools:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "missing:$$missing; installing the Debian packages $(PACKAGES) (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PACKAGES) >/dev/null; \
	else \
	  echo "the tests need$$missing: run 'sudo apt-get install $(PACKAGES)'"; exit 1; \
	fi

## Run the whole test suite (unit, property and integration tests on the embedded broker),
## in TEST_WORKERS pytest processes (pytest-xdist; each file runs in one of them, with a
## broker of its own): most tests wait on brokers and workers, so even on 2 cores three
## processes beat two (2026-11-27, fresh clones, 693 tests: 615 s of pytest against 770).
TEST_WORKERS ?= 3
test: $(STAMP) tools
	$(BIN)/ruff check pipeline schemas tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

## The end-to-end benchmark (not part of `make test`): figures printed and in bench.json.
## One and two workers, five interleaved rounds (the scaling as the median ratio);
## e.g. `make bench BENCH_ARGS=` for one worker once.
BENCH_ARGS ?= --workers 1,2 --rounds 5
bench: $(STAMP)
	$(BIN)/nps-pipeline bench --json bench.json $(BENCH_ARGS)

## The memory target of issue 11: 100,000 agents, the dedupe at its default cap
## (520,000 records: 500,000 ids remembered), one worker; about 2 min.
bench-memory: $(STAMP)
	$(BIN)/nps-pipeline bench --json bench-memory.json --events 520000 --segments 100000 --naive-seconds 0 --latency-seconds 0

lint: $(STAMP)
	$(BIN)/ruff check pipeline schemas tests
	$(BIN)/ruff format --check pipeline schemas tests

## Regenerate schemas/json/ from the pydantic models.
schemas: $(STAMP)
	$(BIN)/nps-pipeline schemas export

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
