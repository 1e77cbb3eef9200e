#!/usr/bin/env bash
# Main job: opens the dashboard on the default model (creating .venv first if needed).
# Extra arguments go to `inspector dashboard` (e.g. --run runs/NAME --port 8502 --model DIR --random-weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
exec .venv/bin/inspector dashboard "$@"
