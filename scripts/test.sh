#!/usr/bin/env bash
# Runs the test suite (creating .venv first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
# One compute thread per test process: the tests use tiny models, for which threads that wait on each other
# cost more than they give (several times over on a busy 2-core CPU). Set OMP_NUM_THREADS to change it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest "$@"
