#!/usr/bin/env bash
# Shared by run.sh and test.sh: the virtualenv and the local MariaDB/Redis.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# ensure_venv [extra]: create .venv if missing and install the project (with an optional extra).
ensure_venv() {
  local extra="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local spec="$REPO_ROOT"
  [ -n "$extra" ] && spec="$REPO_ROOT[$extra]"
  local stamp="$VENV/.installed-${extra:-base}"
  # Reinstall only when pyproject.toml changed since the last install.
  if [ ! -f "$stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing the project into $VENV ${extra:+(with [$extra])}"
    local pip_log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$spec"; } >"$pip_log" 2>&1; then
      tail -n 40 "$pip_log" >&2
      log "pip install failed (full log: $pip_log)"
      return 1
    fi
    touch "$stamp"
  fi
}


port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&-
}

wait_port() { # host port name seconds
  local i
  for ((i = 0; i < $4 * 5; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.2
  done
  log "$3 did not answer on $1:$2 within $4 s"
  return 1
}

redis_ping() { # host port
  local reply
  reply=$( (exec 3<>"/dev/tcp/$1/$2" && printf 'PING\r\n' >&3 && timeout 2 head -c 7 <&3) 2>/dev/null || true)
  [[ "$reply" == +PONG* ]]
}

# ensure_services: start MariaDB and Redis when they are local and not answering, then wait.
ensure_services() {
  local mysql_host mysql_port redis_host redis_port
  read -r mysql_host mysql_port < <("$VENV/bin/python" -c 'from shared.settings import load_settings; s=load_settings(); print(s.mysql.host, s.mysql.port)')
  read -r redis_host redis_port < <("$VENV/bin/python" -c 'from urllib.parse import urlsplit; from shared.settings import load_settings; u=urlsplit(load_settings().redis_url); print(u.hostname or "127.0.0.1", u.port or 6379)')
  local is_local_mysql=0 is_local_redis=0
  case "$mysql_host" in 127.0.0.1|localhost|::1) is_local_mysql=1 ;; esac
  case "$redis_host" in 127.0.0.1|localhost|::1) is_local_redis=1 ;; esac

  if ! port_open "$mysql_host" "$mysql_port"; then
    if [ "$is_local_mysql" = 1 ] && [ -x /usr/sbin/mariadbd ]; then
      log "MariaDB is not answering on $mysql_host:$mysql_port: starting it"
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    elif [ "$is_local_mysql" = 1 ] && command -v mysqld >/dev/null; then
      log "MySQL is not answering: starting mysqld"
      start-stop-daemon --start --oknodo --background --exec "$(command -v mysqld)" || true
    fi
    wait_port "$mysql_host" "$mysql_port" MySQL 60
  fi
  # The port opens before the server accepts logins: wait until a query runs.
  local i
  for ((i = 0; i < 60; i++)); do
    if "$VENV/bin/python" - <<'PY' 2>/dev/null
import pymysql
from shared.settings import load_settings
m = load_settings().mysql
pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, connect_timeout=2).close()
PY
    then break; fi
    sleep 1
  done

  if ! redis_ping "$redis_host" "$redis_port"; then
    if [ "$is_local_redis" = 1 ] && command -v redis-server >/dev/null; then
      log "Redis is not answering on $redis_host:$redis_port: starting it"
      redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null
    fi
    for ((i = 0; i < 100; i++)); do redis_ping "$redis_host" "$redis_port" && break; sleep 0.2; done
    redis_ping "$redis_host" "$redis_port" || { log "Redis did not answer on $redis_host:$redis_port"; return 1; }
  fi
}
