#!/usr/bin/env bash
# Main job: opens the dashboard on the default model (creating .venv first if needed: scripts/setup.sh says
# each step and about how long it takes; the first time about 5 minutes, then nothing).
# Extra arguments go to `inspector dashboard` (e.g. --run runs/NAME --port 8502 --model DIR --random-weights).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .venv/.inspector-installed ]; then
  echo "start: setting up .venv first (about 5 minutes the first time; each step says how long it takes)" >&2
fi
bash scripts/setup.sh
. scripts/env.sh
echo "start: opening the dashboard (the first page load takes about 10 seconds while the model loads)" >&2
exec .venv/bin/inspector dashboard "$@"
