#!/usr/bin/env bash
# Start the whole system in the foreground: the gateway on $PORT and $WORKERS worker processes.
# Creates .venv if missing, starts MariaDB and Redis if they are not answering. Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_venv
ensure_services

# Check the settings once, up front, so a bad value stops here with its name.
read -r PORT_VALUE WORKERS_VALUE GATEWAYS_VALUE KEYS_SET < <("$VENV/bin/python" -c '
import sys
from shared.settings import SettingsError, load_settings
try:
    s = load_settings()
except SettingsError as exc:
    print(f"configuration error: {exc}", file=sys.stderr); sys.exit(2)
print(s.port, s.workers, s.gateway_processes, "yes" if s.api_keys else "no")
')

pids=()
prefix() { # name: prefix every line of a child's output
  local name="$1"
  while IFS= read -r line; do printf '%-9s | %s\n' "$name" "$line"; done
}

start() { # name module
  local name="$1" module="$2"
  ( exec "$VENV/bin/python" -m "$module" ) > >(prefix "$name") 2>&1 &
  pids+=("$!")
}

stop_all() {
  trap - INT TERM EXIT
  log "stopping ${#pids[@]} processes"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # Workers hand their jobs back on SIGTERM; give them time, then insist.
  local deadline=$((SECONDS + 30))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

if [ "$GATEWAYS_VALUE" = 1 ]; then
  start gateway gateway
else
  for ((i = 1; i <= GATEWAYS_VALUE; i++)); do start "gateway-$i" gateway; done
fi
for ((i = 1; i <= WORKERS_VALUE; i++)); do
  start "worker-$i" worker
done

for ((i = 0; i < 150; i++)); do
  port_open 127.0.0.1 "$PORT_VALUE" && break
  sleep 0.2
done

cat >&2 <<MSG

  Customer import service is up: http://127.0.0.1:${PORT_VALUE}   (API docs: http://127.0.0.1:${PORT_VALUE}/docs)
  ${GATEWAYS_VALUE} gateway + ${WORKERS_VALUE} worker process(es). Ctrl-C stops everything.
MSG
if [ "$KEYS_SET" = yes ]; then
  echo "  Authenticate with: -H 'Authorization: Bearer <one of API_KEYS>'" >&2
else
  echo "  API_KEYS is not set: the API is open (set API_KEYS=key1,key2 to require 'Authorization: Bearer <key>')." >&2
fi
echo "  Try: curl -F file=@../shared/data/Sample_Employee_data_xlsx.xlsx http://127.0.0.1:${PORT_VALUE}/upload" >&2
echo >&2

# Exit (and stop the rest) when any child dies.
wait -n "${pids[@]}" || true
log "a process exited; shutting down"
