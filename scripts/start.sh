#!/usr/bin/env bash
# Main job: opens the dashboard on the default model (creating .venv first if needed).
# Extra arguments go to `inspector dashboard` (e.g. --run runs/NAME --port 8502 --model DIR --random-weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
shared="$(cd .. && pwd)/shared"
if [ -d "$shared/data/dailydialog" ]; then export INSPECTOR_DAILYDIALOG_DIR=${INSPECTOR_DAILYDIALOG_DIR:-$shared/data/dailydialog}; fi
if [ -d "$shared/models/gpt2-offline" ]; then export INSPECTOR_GPT2_OFFLINE_DIR=${INSPECTOR_GPT2_OFFLINE_DIR:-$shared/models/gpt2-offline}; fi
exec .venv/bin/inspector dashboard "$@"
