#!/usr/bin/env bash
# Set up, then run lint, type checks and the whole test suite (unit + integration on the
# real embedded broker, chDB and HTTP receivers). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check src tests benchmarks
echo "== mypy"
.venv/bin/mypy src
echo "== pytest"
exec .venv/bin/pytest "$@"
