# Everything a developer or CI needs, from a clean checkout: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

BENCH_VENV ?= .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

.PHONY: venv run test lint fmt bench bench-venv clean browser promtool docs-screenshot

CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -c 'import sys; sys.exit("gaffer needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	-@$(MAKE) --no-print-directory promtool
	touch $(STAMP)

venv: $(STAMP)

# As root, gafferd refuses a TCP address without API keys (any local user could run
# commands as root through it): `make run` accepts that risk out loud for this run only.
# On a shared machine run gafferd as a user of its own (etc/gafferd.service,
# docs/security.md).
run: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then echo "make run: running as root: allowing 127.0.0.1:5000 without API keys for this run (any local user could use it: see docs/security.md)" >&2; fi
	GAFFERD_ALLOW_ROOT_WITHOUT_KEYS=$$(test "$$(id -u)" = 0 && echo true || echo false) exec $(BIN)/gafferd -c etc/gafferd.ini

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The dashboard's tests drive Debian's Chromium with Playwright (which never downloads a
# browser here): installed when missing if we are root with apt-get, else a clear failure.
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the dashboard's browser tests"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "the dashboard's browser tests need Chromium: run 'sudo apt-get install -y chromium'" >&2; \
	    exit 1; \
	  fi; }

# promtool checks /metrics in the tests: taken out of Debian's prometheus package (unpacked,
# not installed: no service) next to the venv's python. Best effort: without it, that one
# check is skipped and says so.
promtool:
	@test -x $(BIN)/promtool || ! command -v apt-get >/dev/null || { \
	  dir=$$(mktemp -d) && \
	  { (cd $$dir && apt-get download -q prometheus >/dev/null 2>&1) || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && \
	      (cd $$dir && apt-get download -q prometheus >/dev/null 2>&1); }; } && \
	  dpkg-deb --fsys-tarfile $$dir/prometheus_*.deb | tar -xO ./usr/bin/promtool > $$dir/promtool && \
	  test -s $$dir/promtool && chmod +x $$dir/promtool && mv $$dir/promtool $(BIN)/promtool && echo "promtool: $(BIN)/promtool"; \
	  rm -rf $$dir; }

# docs/dashboard.png, taken by the dashboard's browser test
docs-screenshot: $(STAMP) browser
	GAFFER_DOCS_SCREENSHOT=docs/dashboard.png $(BIN)/python -m pytest -q \
	  tests/http/test_dashboard.py -k scales

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The side-by-side benchmark's own virtualenv: gaffer next to the peers it is compared
# with, pinned; they are never installed into $(VENV). circus 0.19.0 runs on the same
# tornado (>= 6.4) and pyzmq releases as gaffer, so one environment serves all three.
# gaffer is installed as users get it, not editable (an editable install's import hook
# costs every gafferd start 17 ms and some hundreds of KiB: docs/design.md#memory), so it
# is installed again whenever a source file changes.
BENCH_SOURCES := pyproject.toml setup.py $(shell find gaffer gafferd -type f -not -path '*/__pycache__/*')
$(BENCH_STAMP): $(BENCH_SOURCES)
	$(PYTHON) -c 'import sys; sys.exit("gaffer needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet . supervisor==4.3.0 circus==0.19.0
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

# gaffer's own benchmarks with $(VENV), then gafferd, supervisord and circusd side by side,
# then gafferd's memory over an hour (`$(BENCH_BIN)/python -m bench.peers --quick` and
# `-m bench.soak --quick` for smoke runs, `--write-docs` to update docs/performance.md).
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench engine io http attack handover metrics
	$(BENCH_BIN)/python -m bench peers soak

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist *.egg-info .pytest_cache .ruff_cache
