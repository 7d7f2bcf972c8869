# Sprite Diffusion course: `make course` runs the whole course, `make test` checks it.
#
# Python environment: the active one when there is one (a virtualenv: VIRTUAL_ENV; a conda env
# other than base: CONDA_PREFIX), else .venv, created here with the pinned requirements.txt.
PYTHON ?= python3
ifneq ($(VIRTUAL_ENV),)
ENV_PREFIX := $(VIRTUAL_ENV)
else ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
ENV_PREFIX := $(CONDA_PREFIX)
endif
ifdef ENV_PREFIX
PY     := $(ENV_PREFIX)/bin/python
STAMP  := $(ENV_PREFIX)/.sprite-diffusion-installed
else
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
endif

.PHONY: all course test lint unit notebooks data lab clean help env gpu-check

help:
	@echo "make course  - set up what is missing, run all four notebooks into build/ (main job)"
	@echo "make test    - set up what is missing, lint, unit tests, the course in quick mode, its pages in a browser"
	@echo "make data    - build the OpenMoji sprite set in data/ (rebuilt when it is not the full default set)"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make env     - say which Python environment the targets use"
	@echo "make gpu-check - on a CUDA machine: lessons, benchmark and compile fallback, as one report"

env:
	@echo "Python environment: $(PY)"

$(STAMP): requirements.txt
ifdef ENV_PREFIX
	@echo "Installing requirements.txt into the active environment $(ENV_PREFIX)"
else
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
endif
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# The sprite set: kept when data/ holds what a full default build makes (its manifest and file
# hashes, checked in a second), rebuilt otherwise.
data: $(STAMP)
	@$(PY) scripts/build_sprites.py --check --out data || $(PY) scripts/build_sprites.py --out data --no-progress

course: $(STAMP) data
	$(PY) scripts/run_course.py --out build

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

unit: $(STAMP) data
	$(PY) -m pytest tests --ignore=notebooks -q

# every notebook in quick mode, executed once and exported as pages (fails on a failing cell)
notebooks: $(STAMP) data
	$(PY) scripts/run_course.py --quick --timeout 900 --out build/quick

# the unit tests, then the notebooks (above), then their pages in headless Chromium (tests/test_pages.py)
test: lint $(STAMP) data
	$(PY) -m pytest -q tests --ignore=tests/test_pages.py
	$(MAKE) --no-print-directory notebooks
	COURSE_PAGES=build/quick $(PY) -m pytest -q -rs tests/test_pages.py

lab: $(STAMP) data
	$(PY) -m jupyter lab notebooks/

gpu-check: $(STAMP) data
	$(PY) scripts/gpu_check.py

clean:
	rm -rf build .pytest_cache
