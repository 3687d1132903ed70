#!/usr/bin/env bash
# Start the whole system: the gateway on $PORT and $WORKERS worker processes, and keep it running.
#
#   ./deploy/run.sh            in the foreground; Ctrl-C (or SIGTERM to this script) stops it all
#   ./deploy/run.sh --detach   in the background, log in .run/run.log; returns once /readyz answers 200
#                              (exit 1 with the log's tail if it does not within READY_TIMEOUT_S, 120)
#   ./deploy/run.sh --stop     stop the stack started from this checkout (detached or in a terminal)
#   ./deploy/run.sh --status   say whether it runs, with the pid of each process
#
# Creates .venv if missing; installs and starts MariaDB and Redis if they are local and not answering
# (deploy/lib.sh). A process that exits (crash, SIGKILL, OOM) is started again after a back-off of 1 s,
# doubling up to 30 s, back to 1 s once it has stayed up 60 s; each restart is logged. Stopping sends
# SIGTERM to every process (workers hand their jobs back), waits up to 30 s, then SIGKILLs what is left.
# State lives in $RUN_DIR (default .run/ in the repo): run.pid (this script), pids ("name pid" a line),
# run.log (a detached stack's output) and metrics/ (prometheus-client's multiprocess files, wiped at
# start: metrics/worker for the workers, which all serve WORKER_METRICS_PORT together, and
# metrics/gateway for the gateways when GATEWAY_PROCESSES > 1; every scrape adds up every process of
# its kind).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

MODE=foreground
case "${1:-}" in
  "") ;;
  --detach | -d) MODE=detach ;;
  --stop) MODE=stop ;;
  --status) MODE=status ;;
  --supervise) MODE=supervise ;; # internal: the background half of --detach
  -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

RUN_DIR="${RUN_DIR:-$REPO_ROOT/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
export RUN_DIR
PID_FILE="$RUN_DIR/run.pid"
PIDS_FILE="$RUN_DIR/pids"
LOG_FILE="$RUN_DIR/run.log"
STOP_TIMEOUT_S=30

# running_pid: the pid of this checkout's running supervisor (from run.pid), or fail.
running_pid() {
  local pid args
  [ -f "$PID_FILE" ] || return 1
  read -r pid <"$PID_FILE" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid belongs to some other program: check that it is this script.
  if [ -r "/proc/$pid/cmdline" ]; then args=$(tr '\0' ' ' <"/proc/$pid/cmdline"); else args=$(ps -o args= -p "$pid" || true); fi
  [[ "$args" == *run.sh* ]] || return 1
  echo "$pid"
}

# stop_stack: SIGTERM the supervisor (it stops its processes) and wait; SIGKILL its group if need be.
stop_stack() {
  local pid
  if ! pid=$(running_pid); then
    log "not running (no live supervisor in $PID_FILE)"
    rm -f "$PID_FILE" "$PIDS_FILE"
    return 0
  fi
  log "stopping the stack (supervisor pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < (STOP_TIMEOUT_S + 10) * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "the supervisor did not stop: SIGKILL to its process group"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # Anything left in the group (only a detached stack leads its own group).
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PID_FILE" "$PIDS_FILE"
  log "stopped"
}

if [ "$MODE" = stop ]; then
  stop_stack
  exit 0
fi
if [ "$MODE" = status ]; then
  if pid=$(running_pid); then
    echo "running: supervisor pid $pid"
    cat "$PIDS_FILE" 2>/dev/null || true
    exit 0
  fi
  echo "not running"
  exit 3
fi
if [ "$MODE" != supervise ] && pid=$(running_pid); then
  log "already running from this checkout (supervisor pid $pid): ./deploy/run.sh --stop stops it"
  exit 1
fi

if [ "$MODE" != supervise ]; then
  # shellcheck disable=SC2119 # (no extra: the base install)
  ensure_venv
  ensure_services
fi

# Check the settings once, up front, so a bad value stops here with its name.
settings=$("$VENV/bin/python" -c '
import sys
from shared.config import SettingsError, load_settings
try:
    s = load_settings()
except SettingsError as exc:
    print(f"configuration error: {exc}", file=sys.stderr); sys.exit(2)
host = s.host if s.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
print(s.port, s.workers, s.gateway_processes, "yes" if s.api_keys else "no", host, s.worker_metrics_port)
# The "Try:" line must work when pasted: with keys, it carries the first plain one (a hashed key cannot
# be shown, so then a placeholder). Quoted for the shell here, where the key is parsed.
import shlex
plain = [k.plain for k in s.keys if k.plain is not None]
if s.keys:
    print("-H " + shlex.quote("Authorization: Bearer " + (plain[0] if plain else "<your key>")) + " ")
else:
    print("")
') || exit 2
{
  read -r PORT_VALUE WORKERS_VALUE GATEWAYS_VALUE KEYS_SET HOST_VALUE WORKER_METRICS_VALUE
  # Empty without keys: $(...) dropped that last (empty) line, so read meets the end: not an error.
  IFS= read -r TRY_AUTH || TRY_AUTH=""
} <<<"$settings"
[[ "$HOST_VALUE" == *:* ]] && HOST_VALUE="[$HOST_VALUE]"
BASE_URL="http://${HOST_VALUE}:${PORT_VALUE}"
WORKER_METRICS_URL=""
[ "$WORKER_METRICS_VALUE" != 0 ] && WORKER_METRICS_URL="http://${HOST_VALUE}:${WORKER_METRICS_VALUE}/metrics"

# wait_ready SECONDS PID: until $BASE_URL/readyz answers 200 (0); PID exited (3); time is up (1).
wait_ready() {
  "$VENV/bin/python" - "$BASE_URL/readyz" "$1" "$2" <<'PY'
import os
import sys
import time
import urllib.request

url, seconds, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(3)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.25)
sys.exit(1)
PY
}

banner() {
  cat <<MSG

  Customer import service is up: $BASE_URL   (API docs: $BASE_URL/docs)
  ${GATEWAYS_VALUE} gateway + ${WORKERS_VALUE} worker process(es); a process that exits is restarted.
  Metrics: $BASE_URL/metrics${WORKER_METRICS_URL:+ and $WORKER_METRICS_URL (workers)}
MSG
  if [ "$KEYS_SET" = yes ]; then
    echo "  Authenticate with: -H 'Authorization: Bearer <one of API_KEYS>'"
  else
    echo "  API_KEYS is not set: the API is open (set API_KEYS=key1,key2 to require 'Authorization: Bearer <key>')."
  fi
  echo "  Try: curl ${TRY_AUTH}-F file=@examples/customers.xlsx $BASE_URL/upload"
}

# ---- --detach: start the supervisor in a session of its own, wait until it is ready ----------------
if [ "$MODE" = detach ]; then
  rm -f "$PID_FILE"
  : >"$LOG_FILE"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$REPO_ROOT/deploy/run.sh" --supervise </dev/null >>"$LOG_FILE" 2>&1 &
  else
    nohup "$REPO_ROOT/deploy/run.sh" --supervise </dev/null >>"$LOG_FILE" 2>&1 &
  fi
  # The supervisor writes its own pid (setsid may fork, so $! is not always it).
  for ((i = 0; i < 100; i++)); do
    [ -s "$PID_FILE" ] && break
    sleep 0.1
  done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$!")
  # Ctrl-C while waiting: stop what was started rather than leave it behind.
  trap 'echo >&2; stop_stack; exit 130' INT
  rc=0
  wait_ready "${READY_TIMEOUT_S:-120}" "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    if [ "$rc" = 3 ]; then log "the stack exited while starting"; else log "$BASE_URL/readyz did not answer 200 within ${READY_TIMEOUT_S:-120} s"; fi
    echo "---- last lines of $LOG_FILE ----" >&2
    tail -n 40 "$LOG_FILE" >&2
    echo "----" >&2
    stop_stack
    exit 1
  fi
  banner >&2
  cat >&2 <<MSG
  Running in the background (supervisor pid $pid). Log: $LOG_FILE
  Stop it with: ./deploy/run.sh --stop

MSG
  exit 0
fi

# ---- the supervisor (foreground, or the background half of --detach) ------------------------------
# From here on a failing command must not end the supervisor: each one is handled where it matters.
set +e
echo "$$" >"$PID_FILE"

names=() modules=() pids=() started_ms=() due_ms=() delays=() restarts=()
announcer=""

# Sets NOW_MS without a subshell: a foreground child (even a $(...) one) that exits normally while a
# Ctrl-C arrives makes bash skip its INT trap (it assumes the child handled the signal), and the
# loop below would then restart the children the Ctrl-C stopped instead of stopping.
now_ms() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local t="${EPOCHREALTIME//[!0-9]/}"
    NOW_MS=$((10#$t / 1000))
  else
    NOW_MS=$((SECONDS * 1000))
  fi
}

prefix() { # name: prefix every line of a child's output (and outlive a Ctrl-C to pass on its last lines)
  trap '' INT
  local name="$1" line
  while IFS= read -r line || [ -n "$line" ]; do printf '%-9s | %s\n' "$name" "$line"; done
}

write_pids() {
  local i tmp="$PIDS_FILE.$$"
  : >"$tmp"
  for i in "${!names[@]}"; do
    [ -n "${pids[i]}" ] && printf '%s %s\n' "${names[i]}" "${pids[i]}" >>"$tmp"
  done
  mv -f "$tmp" "$PIDS_FILE"
}

add() { # name module
  names+=("$1") modules+=("$2") pids+=("") started_ms+=(0) due_ms+=(0) delays+=(1) restarts+=(0)
}

# Multiprocess metrics: one folder per kind of process, so that a scrape of either adds up its own kind.
METRICS_DIR="$RUN_DIR/metrics"
rm -rf "$METRICS_DIR"
mkdir -p "$METRICS_DIR/worker"
# A single gateway keeps its metrics in memory: multiprocess mode costs a few µs a request (a file
# write per value), worth it only when several processes share the port.
[ "$GATEWAYS_VALUE" -gt 1 ] && mkdir -p "$METRICS_DIR/gateway"

# mark_dead module pid: a process that exited (killed, maybe) leaves its live gauges behind: drop them.
mark_dead() {
  [ -d "$METRICS_DIR/$1" ] || return 0
  "$VENV/bin/python" -c 'import sys
from prometheus_client.multiprocess import mark_process_dead
mark_process_dead(int(sys.argv[2]), sys.argv[1])' "$METRICS_DIR/$1" "$2" 2>/dev/null || true
}

start_slot() { # index
  local i="$1" folder=""
  [ -d "$METRICS_DIR/${modules[i]}" ] && folder="$METRICS_DIR/${modules[i]}"
  (
    if [ -n "$folder" ]; then export PROMETHEUS_MULTIPROC_DIR="$folder"; else unset PROMETHEUS_MULTIPROC_DIR; fi
    exec "$VENV/bin/python" -m "${modules[i]}"
  ) > >(prefix "${names[i]}") 2>&1 &
  pids[i]=$!
  now_ms
  started_ms[i]=$NOW_MS
  write_pids
}

describe_status() { # status of `wait`
  local status="$1"
  if [ "$status" -gt 128 ] && [ "$status" -lt 160 ]; then
    echo "status $status (killed by SIG$(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128))))"
  else
    echo "status $status"
  fi
}

live_pids() {
  local pid
  for pid in "${pids[@]}"; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  done
  return 0
}

stopping=0
stop_all() { # signal name (for the log)
  [ "$stopping" = 1 ] && return 0
  stopping=1
  trap - INT TERM
  [ -n "$announcer" ] && kill "$announcer" 2>/dev/null
  local live
  mapfile -t live < <(live_pids)
  log "${1:-exit}: stopping ${#live[@]} process(es) (SIGTERM, then SIGKILL after ${STOP_TIMEOUT_S} s)"
  [ "${#live[@]}" -gt 0 ] && kill -TERM "${live[@]}" 2>/dev/null
  now_ms
  local deadline=$((NOW_MS + STOP_TIMEOUT_S * 1000))
  while now_ms && [ "$NOW_MS" -lt "$deadline" ]; do
    mapfile -t live < <(live_pids)
    [ "${#live[@]}" = 0 ] && break
    sleep 0.2
  done
  mapfile -t live < <(live_pids)
  if [ "${#live[@]}" -gt 0 ]; then
    log "still running after ${STOP_TIMEOUT_S} s, SIGKILL: ${live[*]}"
    kill -KILL "${live[@]}" 2>/dev/null
  fi
  local i pid
  for i in "${!pids[@]}"; do
    pid="${pids[i]}"
    [ -n "$pid" ] || continue
    wait "$pid" 2>/dev/null || true
    # Its live gauges too: a process stopped in the middle of its own clean-up (a second signal, the
    # SIGKILL above) may not have dropped them itself.
    mark_dead "${modules[i]}" "$pid"
  done
  rm -f "$PIDS_FILE"
  [ "$(cat "$PID_FILE" 2>/dev/null)" = "$$" ] && rm -f "$PID_FILE"
  log "stopped"
  return 0
}
trap 'stop_all SIGINT; exit 0' INT
trap 'stop_all SIGTERM; exit 0' TERM
trap 'stop_all' EXIT

if [ "$GATEWAYS_VALUE" = 1 ]; then
  add gateway gateway
else
  for ((i = 1; i <= GATEWAYS_VALUE; i++)); do add "gateway-$i" gateway; done
fi
for ((i = 1; i <= WORKERS_VALUE; i++)); do add "worker-$i" worker; done
for i in "${!names[@]}"; do start_slot "$i"; done
log "started: $(tr '\n' ' ' <"$PIDS_FILE")(pids also in $PIDS_FILE)"

# Announce once the gateway is ready, without holding up the supervision below.
(wait_ready 120 "$$" && banner >&2 && [ "$MODE" = foreground ] && echo "  Ctrl-C stops everything." >&2) &
announcer=$!

# Supervise: poll the children; restart one that exited after its back-off.
while :; do
  now_ms
  now=$NOW_MS
  for i in "${!names[@]}"; do
    pid="${pids[i]}"
    if [ -n "$pid" ]; then
      kill -0 "$pid" 2>/dev/null && continue
      status=0
      wait "$pid" 2>/dev/null || status=$?
      mark_dead "${modules[i]}" "$pid"
      # Status 0: the process was asked to stop and did (a crash, SIGKILL or OOM is never 0). That is
      # a Ctrl-C reaching the whole process group even when bash swallowed it (it skips its INT trap
      # when a foreground child exits normally at that moment): stop everything, restart nothing.
      if [ "$status" = 0 ]; then
        pids[i]=""
        stop_all "${names[i]} (pid $pid) exited cleanly, as on Ctrl-C"
        exit 0
      fi
      up_ms=$((now - started_ms[i]))
      [ "$up_ms" -ge 60000 ] && delays[i]=1
      delay="${delays[i]}"
      restarts[i]=$((restarts[i] + 1))
      pids[i]=""
      due_ms[i]=$((now + delay * 1000))
      delays[i]=$((delay * 2 > 30 ? 30 : delay * 2))
      write_pids
      log "${names[i]} (pid $pid) exited with $(describe_status "$status") after $((up_ms / 1000)) s; restarting it in ${delay} s (restart ${restarts[i]})"
    elif [ "$now" -ge "${due_ms[i]}" ]; then
      start_slot "$i"
      log "${names[i]} restarted: pid ${pids[i]}"
    fi
  done
  sleep 0.25 &
  wait $! 2>/dev/null || true
done
