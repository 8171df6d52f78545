# make demo  - create .venv (if needed), install datarl into it, run the main job on the embedded default
# make test  - create .venv (if needed), install datarl with test extras, run the test suite
# make bench - run the benchmarks under bench/

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.datarl-installed
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test test-all bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[test]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	@$(PY) -c "import datarl, math_verify, punkt, langdetect" || { echo "install failed"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/datarl score examples/mixed.jsonl -o out/demo_scored.jsonl

test: $(STAMP)
	$(VENV)/bin/pytest -q

test-all: $(STAMP)
	$(VENV)/bin/pytest -q -m ""

bench: $(STAMP)
	$(PY) bench/score_math.py

clean:
	rm -rf $(VENV) out .pytest_cache
