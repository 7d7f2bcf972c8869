# Sprite Diffusion course: `make course` runs the whole course, `make test` checks it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/sprites_16x16.npy

.PHONY: all course test lint unit notebooks data lab clean help gpu-check

help:
	@echo "make course  - set up what is missing, run all four notebooks into build/ (main job)"
	@echo "make test    - set up what is missing, lint, unit tests, notebooks in quick mode"
	@echo "make data    - build the OpenMoji sprite set in data/"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make gpu-check - on a CUDA machine: lessons, benchmark and compile fallback, as one report"

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DATA): | $(STAMP)
	$(PY) scripts/build_sprites.py --out data --no-progress

data: $(STAMP) $(DATA)

course: $(STAMP) $(DATA)
	$(PY) scripts/run_course.py --out build

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

unit: $(STAMP) $(DATA)
	$(PY) -m pytest tests --ignore=notebooks -q

notebooks: $(STAMP) $(DATA)
	COURSE_QUICK=1 $(PY) -m pytest --nbmake --nbmake-timeout=900 notebooks -q

test: lint $(STAMP) $(DATA)
	$(PY) -m pytest -q tests
	COURSE_QUICK=1 $(PY) -m pytest -q --nbmake --nbmake-timeout=900 notebooks

lab: $(STAMP) $(DATA)
	$(VENV)/bin/jupyter lab notebooks/

gpu-check: $(STAMP) $(DATA)
	$(PY) scripts/gpu_check.py

clean:
	rm -rf build .pytest_cache
