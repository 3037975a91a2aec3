# Two commands set up everything on a fresh machine (Python 3.10 to 3.13):
#   make demo   creates .venv, installs bit-train, runs the offline quickstart: a real
#               BiT transfer in miniature (experiments/miniature/demo.py)
#   make test   creates .venv, installs bit-train with test extras, runs the tests
#   make docs   builds the documentation site (docs/ -> site/) with MkDocs
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test docs benchmarks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,demo,docs]"
	touch $@

demo: $(VENV)/.installed
	$(PY) experiments/miniature/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# The configuration reference is generated from bit_train/config.py's declarations
# (tests/test_helptext.py fails when the committed page differs); --strict: a broken link
# or anchor fails the build.
docs: $(VENV)/.installed
	$(PY) -m bit_train.helptext --markdown > docs/configuration.md
	$(PY) -m mkdocs build --strict --site-dir site

# Measurements on this machine, not tests: each prints its figures (see docs/performance.md).
benchmarks: $(VENV)/.installed
	for b in cli models group_norm data train first_step loop eval bf16; do $(PY) benchmarks/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) workdirs site
