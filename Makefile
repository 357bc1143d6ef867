# dask-magic: one command to set up and run the demo, one to run every test.
#   make demo   - build .venv from nothing, then JupyterLab on notebooks/01-quickstart.ipynb
#                 (headless machines: run that notebook and print its run summary)
#   make test   - build .venv from nothing, then the import contracts, the lint (ruff,
#                 mypy), the full test suite and the version matrix
#   make lint   - ruff format --check, ruff check (notebooks included), mypy: zero findings
#   make bench  - the benchmarks against the peers (benchmarks/README.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dask-magic-installed

# The sidebar's build (jlpm, inside pip's build of the package) fetches npm packages from the
# registry npm is configured for; no registry host is written down here.
export YARN_NPM_REGISTRY_SERVER ?= $(shell npm config get registry 2>/dev/null)

.PHONY: venv system-deps test lint lint-imports test-matrix matrix-py310 matrix-py312 matrix-py313 \
	matrix-lowest demo bench clean

venv: $(STAMP)

# pip install builds the JupyterLab sidebar too (hatch-jupyter-builder runs jlpm); the old
# bundle is removed first so that a TypeScript change can never ship a stale one.
$(STAMP): pyproject.toml labextension/package.json labextension/yarn.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	rm -rf dask_magic/labextension
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "note: /usr/bin/chromium is missing and cannot be installed here: browser tests will be skipped (fail under CI=true)"; \
		fi; \
	fi

test: system-deps venv lint-imports lint
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-matrix

# The layering of docs/architecture.md ([tool.importlinter] in pyproject.toml).
lint-imports: venv
	$(VENV)/bin/lint-imports

# Every check runs, even after one fails, so that one run shows every finding.
lint: venv
	@status=0; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/ruff check . || status=1; \
	$(PY) tools/lint_notebooks.py $(VENV)/bin/ruff || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# The fast part of the suite (no browser, no Binder, no packaging, nothing marked slow) on
# the other Pythons the package supports, and once at the lowest versions pyproject.toml
# allows for the five dependencies dask-magic leans on most. Each job builds its venv from
# nothing (.venv-<job>) with the Python pyenv has, installs only the dependencies
# (tools/matrix_requirements.py), never the package itself, whose build would run jlpm for
# the sidebar, and imports dask_magic from this checkout (tests/conftest.py puts it first on
# sys.path and on the workers' PYTHONPATH). Two jobs run at a time: MATRIX_JOBS=1 for one.
MATRIX_JOBS ?= 2
MATRIX_LOWEST := dask,distributed,ipython,ipywidgets,cloudpickle
test-matrix: venv
	$(MAKE) --no-print-directory -j$(MATRIX_JOBS) matrix-py310 matrix-py312 matrix-py313 matrix-lowest

matrix-py310:
	MAIN_PYTHON=$(PY) .ci/matrix-job py310 3.10
matrix-py312:
	MAIN_PYTHON=$(PY) .ci/matrix-job py312 3.12
matrix-py313:
	MAIN_PYTHON=$(PY) .ci/matrix-job py313 3.13
matrix-lowest:
	MAIN_PYTHON=$(PY) .ci/matrix-job lowest 3.10 $(MATRIX_LOWEST)

# A browser can be opened on macOS or where DISPLAY / WAYLAND_DISPLAY is set: JupyterLab on
# the quickstart. Elsewhere (CI, ssh): run the notebook headless and print its run summary.
demo: venv
	@if [ "$$(uname)" = Darwin ] || [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then \
		$(VENV)/bin/jupyter lab notebooks/01-quickstart.ipynb; \
	else \
		$(PY) notebooks/headless.py 01-quickstart.ipynb; \
	fi

# Every workload against every peer, in one run (about 12 minutes on 2 cores); the table goes to
# stdout and benchmarks/results/. Add ARGS="--workers 8" on a bigger machine.
bench: venv
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .venv-py310 .venv-py312 .venv-py313 .venv-lowest .pytest_cache dask_magic/labextension
