#!/usr/bin/env bash
# Run the whole test suite against real MariaDB and Redis (each run gets its own database and key prefix).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_venv test
ensure_services
log "lint: ruff and mypy"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
log "running pytest"
exec "$VENV/bin/python" -m pytest "$@"
