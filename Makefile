# dask-magic: one command to set up and run the demo, one to run every test.
#   make demo   - build .venv from nothing, then JupyterLab on notebooks/01-quickstart.ipynb
#                 (headless machines: run that notebook and print its run summary)
#   make test   - build .venv from nothing, then the full test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dask-magic-installed

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: venv
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache dask_magic/labextension
