#!/usr/bin/env bash
# The CUDA checks in one go: the parity report of `inspector doctor --device cuda` and the GPU benchmark.
#
# Needs the GPT-2 config and tokenizer in .device/gpt2-offline (git-ignored), copied once:
#   mkdir -p .device && cp -rL ../shared/models/gpt2-offline .device/
# then, on a machine with an NVIDIA GPU where torch (with CUDA) and transformers are installed:
#   bash scripts/gpu_check.sh
# It installs the project without dependencies, prints the GPU and library versions, the parity report of
# `inspector doctor --device cuda`, and runs `benchmarks/bench_capture.py --device cuda --long` (batch 1 and 16
# at 64+64 tokens, and the 256+128-token batch-16 case, where the notebook's method is expected to run out of
# memory). Everything lands in $OUT when set, else artifacts/gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-artifacts/gpu}"
mkdir -p "$out"
model="$PWD/.device/gpt2-offline"
[ -f "$model/config.json" ] || { echo "missing $model: copy ../shared/models/gpt2-offline there and carry .device" >&2; exit 2; }
export INSPECTOR_GPT2_OFFLINE_DIR="$model" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python -m pip install -q --no-deps --no-build-isolation -e . >"$out/pip.log" 2>&1 || python -m pip install -q --no-deps -e . >>"$out/pip.log" 2>&1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__)"; } 2>&1 | tee "$out/machine.txt"
echo "== inspector doctor --device cuda"
timeout 150 python -m inspector.cli.main doctor --model "$model" --random-weights --device cuda \
  --json "$out/doctor_cuda.json" 2>&1 | tee "$out/doctor.txt"
echo "== bench_capture --device cuda --long"
timeout 330 python benchmarks/bench_capture.py --device cuda --long --json "$out/bench_capture_cuda.json" 2>&1 | tee "$out/bench_capture_cuda.txt"
