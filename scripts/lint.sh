#!/usr/bin/env bash
# Linters and the type checker, as CI runs them (creating .venv first if needed). Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "ruff check" >&2
.venv/bin/ruff check inspector dashboard tests benchmarks examples scripts
echo "mypy (inspector, dashboard: strict)" >&2
.venv/bin/mypy
echo "mypy (tests)" >&2
.venv/bin/mypy --config-file tests/mypy.ini
