# Two commands do all the set-up on a fresh Debian machine (as root):
#   make serve   - install everything, then serve the healthy scenario until Ctrl-C
#   make test    - install everything, then lint, type-check and run the whole suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= healthy
PYTEST_ARGS ?= -n 2
# The other Pythons pyproject.toml declares: the whole suite runs on each, in a venv of its
# own (.venv-py312, .venv-py313). The interpreters are pyenv builds on the CI machine.
PYTHON_312 ?= $(firstword $(wildcard /root/.pyenv/versions/3.12.1/bin/python3.12) python3.12)
PYTHON_313 ?= $(firstword $(wildcard /root/.pyenv/versions/3.13.0/bin/python3.13) python3.13)
EXTRA_VENVS ?= .venv-py312 .venv-py313

.PHONY: serve test lint install docker-image bench bench-peers clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps
	bash scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# One venv per extra Python: `.venv-py312` is made with $(PYTHON_312).
.venv-py%/.installed-stamp: pyproject.toml $(STAMP)
	$(PYTHON_$*) -m venv .venv-py$*
	.venv-py$*/bin/pip install --quiet --upgrade pip
	.venv-py$*/bin/pip install --quiet -e '.[dev]'
	touch $@

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
# (not editable) into a venv of its own, every scenario's client cases, random order;
# then the suite again on each extra Python (the examples once is enough).
test: lint docker-image $(EXTRA_VENVS:%=%/.installed-stamp)
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	scripts/run-examples
	set -e; for venv in $(EXTRA_VENVS); do \
		echo "== the suite on $$($$venv/bin/python --version)"; \
		$$venv/bin/pytest $(PYTEST_ARGS); \
	done

bench: $(STAMP)
	$(VENV)/bin/python bench/bench_smtp_fixture.py

# Ours vs smtp-server, maildev, hoodiecrow-imap, pymap, aiosmtpd and Dovecot (issue 13):
# installs them into bench/.peers, runs interleaved rounds, rewrites the results section of
# docs/benchmarks.md and docs/bench-peers.png. BENCH_ARGS="--rounds 9 --write" to vary.
BENCH_ARGS ?= --write
bench-peers:
	bash scripts/bench-peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(EXTRA_VENVS) .venv-examples .pytest_cache .mypy_cache .ruff_cache
