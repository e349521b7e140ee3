# gatekeeper — `make run` starts the demo, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run api test lint typecheck system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m examples.demo --port 8080 --origin-port 9000

api: $(STAMP)
	$(PY) -m gatekeeper run --port 8080

# Performance ratios side by side on loopback (~7 min; docs/performance.md). ARGS="--quick" or
# ARGS="--only P1,P3" for less.
.PHONY: bench
bench: $(STAMP) system-deps
	$(PY) -m bench $(ARGS)

system-deps:
	./scripts/system-deps.sh

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# axe-core for the accessibility checks in the browser tests, pinned by tests/js/package-lock.json.
AXE := tests/js/node_modules/axe-core/axe.min.js
$(AXE): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The container image, built and checked as an operator runs it (scripts/image-check.sh: podman
# or Docker; without a registry the base is built from Debian's packages; ~2.5 min cold).
.PHONY: image image-check dist dist-check lock
image:
	./scripts/image-check.sh build

image-check:
	./scripts/image-check.sh

# The distribution (gatekeeper-waitingroom): sdist + wheel into dist/, then installed into a
# fresh venv and run (scripts/dist-check.sh).
dist:
	./scripts/dist-check.sh build

dist-check:
	./scripts/dist-check.sh

# Re-pin requirements.lock (what the image installs) from pyproject.toml; existing pins are kept
# unless LOCK_ARGS=--upgrade. setuptools is there to build gatekeeper's own wheel offline.
lock: $(STAMP)
	$(PY) -m pip install --quiet 'uv>=0.5'
	printf 'setuptools>=77\n' | $(VENV)/bin/uv pip compile pyproject.toml - --universal \
	  --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
	  --quiet -o requirements.lock $(LOCK_ARGS)

test: $(STAMP) system-deps lint typecheck $(AXE) image-check dist-check
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
