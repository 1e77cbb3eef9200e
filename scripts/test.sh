#!/usr/bin/env bash
# Runs the test suite (creating .venv first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
shared="$(cd .. && pwd)/shared"
if [ -d "$shared/data/dailydialog" ]; then export INSPECTOR_DAILYDIALOG_DIR=${INSPECTOR_DAILYDIALOG_DIR:-$shared/data/dailydialog}; fi
if [ -d "$shared/models/gpt2-offline" ]; then export INSPECTOR_GPT2_OFFLINE_DIR=${INSPECTOR_GPT2_OFFLINE_DIR:-$shared/models/gpt2-offline}; fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec .venv/bin/python -m pytest "$@"
