# Two commands do all the set-up on a fresh Debian machine (as root):
#   make serve   - install everything, then serve the healthy scenario until Ctrl-C
#   make test    - install everything, then lint, type-check and run the whole suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= healthy
PYTEST_ARGS ?= -n 2

.PHONY: serve test lint install docker-image bench bench-peers clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps
	bash scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/mailharness serve --scenario $(SCENARIO) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python scripts/typecheck_tree.py
	$(VENV)/bin/mypy

# The Dovecot image is built once per machine (about a minute from nothing) and cached;
# building it here keeps that minute out of the first Docker test.
docker-image: $(STAMP)
	sh scripts/docker-engine build-image

# The suite, then examples/connector's suite as a user runs it: the package installed
# (not editable) into a venv of its own, every scenario's client cases, random order.
test: lint docker-image
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	scripts/run-examples

bench: $(STAMP)
	$(VENV)/bin/python bench/bench_smtp_fixture.py

# Ours vs smtp-server, maildev, hoodiecrow-imap, pymap, aiosmtpd and Dovecot (issue 13):
# installs them into bench/.peers, runs interleaved rounds, rewrites the results section of
# docs/benchmarks.md and docs/bench-peers.png. BENCH_ARGS="--rounds 9 --write" to vary.
BENCH_ARGS ?= --write
bench-peers:
	bash scripts/bench-peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-examples .pytest_cache .mypy_cache .ruff_cache
