#!/usr/bin/env bash
# Run the whole test suite against real MariaDB and Redis (each run gets its own database and key prefix).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_venv test
ensure_services
ensure_redis_tools || true
ensure_check_tools || true
# A browser for the browser tests when deploy/browser.sh provides one; its failure does not stop the run.
if [ -f "$REPO_ROOT/deploy/browser.sh" ]; then
  # shellcheck source=/dev/null
  source "$REPO_ROOT/deploy/browser.sh"
  ensure_browser || true
fi
log "lint: ruff and mypy"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
log "running pytest"
exec "$VENV/bin/python" -m pytest "$@"
