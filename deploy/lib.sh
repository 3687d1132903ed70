#!/usr/bin/env bash
# Shared by run.sh and test.sh: the virtualenv and the local MariaDB/Redis (installed and started when
# missing, see ensure_services).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }

# ensure_venv [extra]: create .venv if missing and install the project: its runtime dependencies
# exactly as requirements.lock pins them (hash-checked; deploy/lock.sh regenerates it), then the
# project itself without dependencies, or with an extra (`test`: the test tools, on top of the lock).
ensure_venv() {
  local extra="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local lock="$REPO_ROOT/requirements.lock"
  local stamp="$VENV/.installed-${extra:-base}"
  # Reinstall only when pyproject.toml or the lock changed since the last install, or a C source of the
  # compiled reader did (pip install -e . builds shared/spreadsheet/_xlsx_fast*.so in place).
  if [ ! -f "$stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$stamp" ] || [ "$lock" -nt "$stamp" ] ||
     [ -n "$(find "$REPO_ROOT/shared/spreadsheet" -maxdepth 1 -name '*.c' -newer "$stamp" -print -quit)" ]; then
    log "installing the project into $VENV from requirements.lock ${extra:+(with [$extra])}"
    local pip_log="$VENV/pip-install.log"
    local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)
    local project=(--no-deps -e "$REPO_ROOT")
    [ -n "$extra" ] && project=(-e "${REPO_ROOT}[$extra]")
    if ! { "${pip[@]}" --upgrade pip &&
           "${pip[@]}" --require-hashes -r "$lock" &&
           "${pip[@]}" "${project[@]}"; } >"$pip_log" 2>&1; then
      tail -n 40 "$pip_log" >&2
      log "pip install failed (full log: $pip_log)"
      return 1
    fi
    touch "$stamp"
  fi
}

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
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

is_local_host() { # host
  case "$1" in localhost | ::1 | 127.*) return 0 ;; *) return 1 ;; esac
}

# Server programs (mariadbd, start-stop-daemon, mariadb-install-db) live in sbin directories, which a
# normal user's PATH often lacks. They are added to a system PATH (one holding /usr/bin or /bin) and
# only to such a PATH: a PATH without those (a test's, say) is taken exactly as given. Every program
# below is then looked up on PATH alone.
add_sbin_to_path() {
  case ":$PATH:" in *:/usr/bin:* | *:/bin:*) ;; *) return 0 ;; esac
  local dir
  for dir in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$dir:"*) ;; *) PATH="$PATH:$dir" ;; esac
  done
  export PATH
}

# can_root: true when this shell is root or may use sudo without a password.
can_root() {
  [ "${EUID:-$(id -u)}" = 0 ] && return 0
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null
}

as_root() { # command...: run it as root (directly, or through password-less sudo)
  if [ "${EUID:-$(id -u)}" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

mysql_server_bin() { command -v mariadbd 2>/dev/null || command -v mysqld 2>/dev/null; }

# The addresses the settings name, one line: mysql_host mysql_port mysql_user password(set|empty)
# redis_host redis_port ("-" for a Redis reached over a unix socket). Exit 2 on a bad setting.
service_addresses() {
  "$VENV/bin/python" - <<'PY'
import sys
from urllib.parse import urlsplit

from shared.config import SettingsError, load_settings

try:
    s = load_settings()
except SettingsError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
u = urlsplit(s.redis_url)
host, port = ("-", "-") if u.scheme == "unix" else (u.hostname or "127.0.0.1", u.port or 6379)
print(s.mysql.host, s.mysql.port, s.mysql.user, "set" if s.mysql.password else "empty", host, port)
PY
}

# mysql_login_wait SECONDS: until a login with the settings' user works. Exit 0 ready, 3 refused
# (wrong user or password: waiting will not help), 1 not ready in time. Prints the server's last error.
mysql_login_wait() {
  "$VENV/bin/python" - "$1" <<'PY'
import sys
import time

import pymysql

from shared.config import load_settings

m = load_settings().mysql
deadline = time.monotonic() + float(sys.argv[1])
while True:
    try:
        pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, connect_timeout=3).close()
        sys.exit(0)
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else 0
        if code in (1044, 1045, 1698):
            print(exc.args[1] if len(exc.args) > 1 else exc)
            sys.exit(3)
        if time.monotonic() > deadline:
            print(exc)
            sys.exit(1)
    time.sleep(0.5)
PY
}

# explain_install REASON PACKAGE...: say why nothing was installed and the exact commands that would.
explain_install() {
  local reason="$1"
  shift
  local sudo="sudo "
  [ "${EUID:-$(id -u)}" = 0 ] && sudo=""
  log "$reason"
  {
    echo
    echo "  Install the missing server(s), then run this again:"
    echo
    echo "      ${sudo}apt-get update && ${sudo}apt-get install -y $*"
    echo
    echo "  (That is Debian/Ubuntu; elsewhere install MariaDB or MySQL 8 and Redis with the system's package"
    echo "  manager.) deploy/run.sh and deploy/test.sh start installed servers themselves when they run as"
    echo "  root or with password-less sudo; otherwise start them with:"
    echo
    case " $* " in *" mariadb-server "*) echo "      ${sudo}service mariadb start" ;; esac
    case " $* " in *" redis-server "*) echo "      redis-server --daemonize yes --bind 127.0.0.1 --port ${REDIS_PORT_WANTED:-6379} --save \"\" --appendonly no" ;; esac
    echo
    echo "  Or point MYSQL_DSN / REDIS_URL at servers that run elsewhere."
    echo
  } >&2
}

# install_packages PACKAGE...: apt-get install them as root, or explain how and fail (at once).
install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    explain_install "cannot install $*: apt-get is not available here" "$@"
    return 1
  fi
  if ! can_root; then
    explain_install "cannot install $*: that needs root (this is not root, and sudo asks for a password)" "$@"
    return 1
  fi
  log "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update >&2 || log "apt-get update failed; trying the install anyway"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
    explain_install "apt-get install -y $* failed (its output is above)" "$@"
    return 1
  fi
}

# start_mysql BINARY HOST PORT: start an installed MariaDB/MySQL that is not running (needs root).
start_mysql() {
  local bin="$1" host="$2" port="$3"
  if ! can_root; then
    log "MariaDB/MySQL is installed ($bin) but nothing answers on $host:$port, and starting it needs root."
    printf '\n  Start it, then run this again:\n\n      sudo service mariadb start\n\n' >&2
    return 1
  fi
  log "MariaDB/MySQL is not answering on $host:$port: starting $bin"
  # A fresh install inside a container (no init system) may have neither a data directory nor /run/mysqld.
  if as_root test -d /var/lib/mysql && ! as_root test -d /var/lib/mysql/mysql; then
    local installer
    installer=$(command -v mariadb-install-db || command -v mysql_install_db || true)
    if [ -n "$installer" ]; then
      log "initialising the data directory /var/lib/mysql ($installer --user=mysql)"
      as_root "$installer" --user=mysql >&2 || { log "$installer failed"; return 1; }
    fi
  fi
  if getent passwd mysql >/dev/null 2>&1; then
    as_root install -d -o mysql -g mysql /run/mysqld 2>/dev/null || true
  fi
  if command -v start-stop-daemon >/dev/null 2>&1; then
    as_root start-stop-daemon --start --oknodo --background --exec "$bin" || true
  else
    as_root setsid "$bin" </dev/null >/dev/null 2>&1 &
  fi
}

# On a MariaDB this script has just installed, let root log in without a password over TCP, as the
# default MYSQL_DSN does: Debian's root@localhost accepts only the unix socket, and a TCP login from
# 127.0.0.1 resolves to root@localhost (or, with skip-name-resolve, to root@127.0.0.1).
allow_root_over_tcp() {
  local client
  client=$(command -v mariadb || command -v mysql || true)
  [ -n "$client" ] || return 1
  log "letting root log in without a password over TCP (on the MariaDB just installed)"
  as_root "$client" --protocol=socket -e "
    ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
    FLUSH PRIVILEGES;" >&2
}

# ensure_services: make sure MariaDB/MySQL and Redis answer. For a local address that nothing answers:
# start the installed server; if it is not installed, install it with apt-get when this runs as root
# (or with password-less sudo), else stop at once with the command to run. Remote servers are waited for.
ensure_services() {
  add_sbin_to_path
  local addresses
  addresses=$(service_addresses) || return 2
  local mysql_host mysql_port mysql_user mysql_password redis_host redis_port
  read -r mysql_host mysql_port mysql_user mysql_password redis_host redis_port <<<"$addresses"
  REDIS_PORT_WANTED="$redis_port"

  local mysql_up=1 redis_up=1 mysql_bin="" redis_bin="" missing=()
  port_open "$mysql_host" "$mysql_port" || mysql_up=0
  if [ "$redis_host" != - ] && ! redis_ping "$redis_host" "$redis_port"; then redis_up=0; fi
  if [ "$mysql_up" = 0 ] && is_local_host "$mysql_host"; then
    mysql_bin=$(mysql_server_bin) || missing+=(mariadb-server)
  fi
  if [ "$redis_up" = 0 ] && is_local_host "$redis_host"; then
    redis_bin=$(command -v redis-server 2>/dev/null) || missing+=(redis-server)
  fi

  local installed_mysql=0
  if [ "${#missing[@]}" -gt 0 ]; then
    local what=()
    case " ${missing[*]} " in *" mariadb-server "*) what+=("MariaDB/MySQL (nothing answers on $mysql_host:$mysql_port)") ;; esac
    case " ${missing[*]} " in *" redis-server "*) what+=("Redis (nothing answers on $redis_host:$redis_port)") ;; esac
    local joined="${what[0]}"
    [ "${#what[@]}" -gt 1 ] && joined+=" and ${what[1]}"
    log "not installed: $joined"
    install_packages "${missing[@]}" || return 1
    if [ "$mysql_up" = 0 ] && is_local_host "$mysql_host"; then
      mysql_bin=$(mysql_server_bin) || {
        log "apt-get install -y ${missing[*]} finished, but there is still no mariadbd or mysqld on PATH ($PATH)"
        return 1
      }
      case " ${missing[*]} " in *" mariadb-server "*) installed_mysql=1 ;; esac
    fi
    if [ "$redis_up" = 0 ] && is_local_host "$redis_host"; then
      redis_bin=$(command -v redis-server 2>/dev/null) || {
        log "apt-get install -y ${missing[*]} finished, but there is still no redis-server on PATH ($PATH)"
        return 1
      }
    fi
  fi

  # MySQL: start it (a package install may have started it already), wait for the port, then a login.
  if [ "$mysql_up" = 0 ] && ! port_open "$mysql_host" "$mysql_port"; then
    if [ -n "$mysql_bin" ]; then
      start_mysql "$mysql_bin" "$mysql_host" "$mysql_port" || return 1
    fi
    wait_port "$mysql_host" "$mysql_port" MySQL 60 || {
      [ -n "$mysql_bin" ] && log "its log is usually /var/log/mysql/error.log"
      return 1
    }
  fi
  local out rc=0
  out=$(mysql_login_wait 60) || rc=$?
  if [ "$rc" = 3 ] && [ "$installed_mysql" = 1 ] && [ "$mysql_user" = root ] && [ "$mysql_password" = empty ]; then
    allow_root_over_tcp && { rc=0; out=$(mysql_login_wait 10) || rc=$?; }
  fi
  if [ "$rc" = 3 ]; then
    log "MySQL at $mysql_host:$mysql_port refuses the login of MYSQL_DSN: $out"
    printf '\n  Set MYSQL_DSN=mysql://USER:PASSWORD@%s:%s/customers to a user that may create a database.\n' \
      "$mysql_host" "$mysql_port" >&2
    if [ "$mysql_user" = root ] && [ "$mysql_password" = empty ] && is_local_host "$mysql_host"; then
      cat >&2 <<'MSG'
  Or, for MariaDB on Debian (its root logs in only over the unix socket), let root log in without a
  password over TCP too:

      sudo mariadb -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
MSG
    fi
    echo >&2
    return 1
  elif [ "$rc" != 0 ]; then
    log "MySQL at $mysql_host:$mysql_port does not accept a login: $out"
    return 1
  fi

  # Redis.
  if [ "$redis_up" = 0 ]; then
    if [ -n "$redis_bin" ]; then
      local bind=127.0.0.1
      [ "$redis_host" = ::1 ] && bind=::1
      log "Redis is not answering on $redis_host:$redis_port: starting $redis_bin"
      "$redis_bin" --daemonize yes --bind "$bind" --port "$redis_port" --save "" --appendonly no >/dev/null || true
    fi
    local i
    for ((i = 0; i < 150; i++)); do
      redis_ping "$redis_host" "$redis_port" && break
      sleep 0.2
    done
    redis_ping "$redis_host" "$redis_port" || {
      log "Redis did not answer on $redis_host:$redis_port within 30 s"
      return 1
    }
  fi
}

# ensure_redis_tools: the programs the scaling tests start their own servers with (a Redis Cluster and
# Sentinels on free loopback ports): redis-server (also run as `redis-server --sentinel`) and
# redis-cli. Installed when missing and possible; otherwise those tests skip, saying why. Debian's
# redis-sentinel package is not needed (it would also start a sentinel watching 127.0.0.1:6379).
ensure_redis_tools() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "the Redis Cluster and Sentinel tests need ${missing[*]}"
  install_packages "${missing[@]}" || {
    log "without ${missing[*]} the Redis Cluster and Sentinel tests are skipped"
    return 1
  }
}

# ensure_check_tools: what two checks of the suite run when present: shellcheck (the deploy scripts)
# and Debian's docker-compose (`docker-compose config` of the compose file's MinIO profile; no Docker
# engine needed). Installed when missing and possible; otherwise those two tests skip, saying why.
ensure_check_tools() {
  local missing=()
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "the shellcheck and compose-config tests need ${missing[*]}"
  install_packages "${missing[@]}" || {
    log "without ${missing[*]} those tests are skipped"
    return 1
  }
}
