#!/usr/bin/env bash
# Set up, then run the whole pipeline on the embedded default with a simulated fleet and
# a live view. Extra arguments go to `agentwatch up` (see `agentwatch up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/agentwatch up --demo "$@"
