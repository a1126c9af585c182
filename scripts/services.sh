#!/usr/bin/env bash
# Throwaway test services on loopback: PostgreSQL, RabbitMQ, an S3 server (s3s-fs) and clamd,
# each on a free port with its data under one directory, installing what is missing.
#
#   scripts/services.sh start [DIR]      start (or reuse) them; writes DIR/env
#   scripts/services.sh stop [DIR]       stop them and remove DIR
#   scripts/services.sh status [DIR]
#   scripts/services.sh install          only install what is missing
#
# DIR defaults to target/test-services. DIR/env holds `export NAME=value` lines the tests
# read (FILESTORE_TEST_*); `start` also prints its path. Start with `--only postgres,rabbitmq`
# for a private subset (the outage tests stop and start their own).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CMD="${1:-start}"
shift || true
DIR="$ROOT/target/test-services"
ONLY="postgres,rabbitmq,s3,clamd"
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
ENV_FILE="$DIR/env"
S3S_VERSION=0.14.1

log() { echo "services: $*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install_missing() {
  if wants postgres && [ -z "$(pg_bin)" ]; then apt_install postgresql; fi
  if wants rabbitmq && [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then apt_install rabbitmq-server; fi
  if wants clamd && ! command -v clamd >/dev/null; then apt_install clamav-daemon clamav; fi
  if wants s3 && [ -z "$(s3s_bin)" ]; then
    log "building s3s-fs $S3S_VERSION (about 9 minutes, once per machine)"
    cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --quiet
  fi
}

# On PATH, or where cargo install put it.
s3s_bin() {
  command -v s3s-fs 2>/dev/null ||
    { [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ] && echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; } ||
    true
}

# PostgreSQL refuses to run as root; the cluster belongs to the `postgres` user then.
pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  local port bin data
  port=$(free_port); bin=$(pg_bin); data="$DIR/postgres"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown -R postgres "$data" && chmod 755 "$DIR"
  as_pg "$bin/initdb" -D "$data/db" -A trust -U postgres --no-sync >"$DIR/postgres.init.log" 2>&1 ||
    { log "initdb failed (the postgres user needs to reach $DIR):"; cat "$DIR/postgres.init.log" >&2; exit 1; }
  cat >>"$data/db/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 64MB
EOF
  as_pg "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 start >/dev/null 9>&-
  {
    echo "export FILESTORE_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export FILESTORE_TEST_PG_BIN=$bin"
    echo "export FILESTORE_TEST_PG_DATA=$data/db"
    echo "export FILESTORE_TEST_PG_USER=$(pg_user)"
  } >>"$ENV_FILE"
  log "postgres on 127.0.0.1:$port"
}

start_rabbitmq() {
  local port dist node base
  port=$(free_port); dist=$(free_port); base="$DIR/rabbitmq"
  node="fstest$port@localhost"
  mkdir -p "$base/home" "$base/mnesia" "$base/log"
  : >"$base/enabled_plugins"
  echo "[]." >"$base/enabled_plugins"
  export HOME="$base/home" RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" RABBITMQ_MNESIA_BASE="$base/mnesia" \
    RABBITMQ_LOG_BASE="$base/log" RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$base/rabbitmq" RABBITMQ_PID_FILE="$base/pid"
  echo "loopback_users = none" >"$base/rabbitmq.conf"
  /usr/lib/rabbitmq/bin/rabbitmq-server -detached >"$base/start.log" 2>&1 9>&-
  /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" wait --timeout 120 "$base/pid" >/dev/null 2>&1 ||
    { log "rabbitmq did not start:"; tail -20 "$base/log/"*.log >&2 || true; exit 1; }
  {
    echo "export FILESTORE_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$port/%2f"
    echo "export FILESTORE_TEST_RABBIT_NODE=$node"
    echo "export FILESTORE_TEST_RABBIT_HOME=$base/home"
    echo "export FILESTORE_TEST_RABBIT_BASE=$base"
    echo "export FILESTORE_TEST_RABBIT_DIST_PORT=$dist"
  } >>"$ENV_FILE"
  log "rabbitmq $node on 127.0.0.1:$port"
}

start_s3() {
  local port key secret
  port=$(free_port); key=filestore-test; secret="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  mkdir -p "$DIR/s3"
  nohup "$(s3s_bin)" --host 127.0.0.1 --port "$port" --access-key "$key" \
    --secret-key "$secret" "$DIR/s3" >"$DIR/s3.log" 2>&1 9>&- &
  echo $! >"$DIR/s3.pid"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  {
    echo "export FILESTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export FILESTORE_TEST_S3_ACCESS_KEY=$key"
    echo "export FILESTORE_TEST_S3_SECRET_KEY=$secret"
    echo "export FILESTORE_TEST_S3_ROOT=$DIR/s3"
  } >>"$ENV_FILE"
  log "s3s-fs on 127.0.0.1:$port"
}

# No internet for freshclam: the database is generated here, the EICAR test signature plus a
# custom one, so detection by the real engine is what the tests see.
write_signatures() {
  local db="$1" eicar custom
  eicar=$(printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')
  custom=$(printf '%s' 'FILESTORE-TEST-MALWARE-SIGNATURE' | od -An -tx1 | tr -d ' \n')
  mkdir -p "$db"
  {
    echo "Filestore.Test.EICAR:0:0:$eicar"
    echo "Filestore.Test.Custom:0:*:$custom"
  } >"$db/filestore-test.ndb"
}

start_clamd() {
  local port conf
  port=$(free_port); conf="$DIR/clamd.conf"
  write_signatures "$DIR/clamdb"
  cat >"$conf" <<EOF
Foreground yes
TCPSocket $port
TCPAddr 127.0.0.1
LocalSocket $DIR/clamd.sock
DatabaseDirectory $DIR/clamdb
LogFile $DIR/clamd.log
PidFile $DIR/clamd.pidfile
StreamMaxLength 4000M
MaxScanSize 4000M
MaxFileSize 4000M
MaxThreads 4
EOF
  [ "$(id -u)" = 0 ] && echo "User root" >>"$conf"
  nohup clamd -c "$conf" >"$DIR/clamd.out" 2>&1 9>&- &
  echo $! >"$DIR/clamd.pid"
  for _ in $(seq 300); do
    if [ -S "$DIR/clamd.sock" ]; then break; fi
    if ! kill -0 "$(cat "$DIR/clamd.pid")" 2>/dev/null; then
      log "clamd did not start:"; cat "$DIR/clamd.out" "$DIR/clamd.log" >&2 || true; exit 1
    fi
    sleep 0.1
  done
  {
    echo "export FILESTORE_TEST_CLAMD=tcp://127.0.0.1:$port"
    echo "export FILESTORE_TEST_CLAMD_SOCKET=unix://$DIR/clamd.sock"
  } >>"$ENV_FILE"
  log "clamd on 127.0.0.1:$port"
}

alive() {
  [ -f "$ENV_FILE" ] || return 1
  # shellcheck disable=SC1090
  (
    . "$ENV_FILE"
    if wants postgres; then as_pg "$FILESTORE_TEST_PG_BIN/pg_ctl" -D "$FILESTORE_TEST_PG_DATA" status >/dev/null 2>&1 || exit 1; fi
    if wants rabbitmq; then
      HOME="$FILESTORE_TEST_RABBIT_HOME" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$FILESTORE_TEST_RABBIT_NODE" status >/dev/null 2>&1 || exit 1
    fi
    if wants s3; then kill -0 "$(cat "$DIR/s3.pid")" 2>/dev/null || exit 1; fi
    if wants clamd; then kill -0 "$(cat "$DIR/clamd.pid")" 2>/dev/null || exit 1; fi
  )
}

stop_all() {
  [ -f "$ENV_FILE" ] || { rm -rf "$DIR"; return 0; }
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  if [ -n "${FILESTORE_TEST_PG_DATA:-}" ]; then
    as_pg "$FILESTORE_TEST_PG_BIN/pg_ctl" -D "$FILESTORE_TEST_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${FILESTORE_TEST_RABBIT_NODE:-}" ]; then
    HOME="$FILESTORE_TEST_RABBIT_HOME" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$FILESTORE_TEST_RABBIT_NODE" stop >/dev/null 2>&1 || true
  fi
  for pid in "$DIR/s3.pid" "$DIR/clamd.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

# The lock is fd 9; every service started above closes it (9>&-), or it would hold the lock
# for as long as it runs.
case "$CMD" in
  install) install_missing ;;
  start)
    exec 9>"$DIR.lock"
    flock 9
    if alive; then
      log "reusing the services in $DIR"
    else
      stop_all
      mkdir -p "$DIR"
      install_missing
      : >"$ENV_FILE"
      wants postgres && start_postgres
      wants rabbitmq && start_rabbitmq
      wants s3 && start_s3
      wants clamd && start_clamd
      echo "export FILESTORE_TEST_SERVICES=$DIR" >>"$ENV_FILE"
    fi
    echo "$ENV_FILE"
    ;;
  stop) stop_all ;;
  status) if alive; then echo "up: $ENV_FILE"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status|install [DIR] [--only postgres,rabbitmq,s3,clamd]" >&2; exit 2 ;;
esac
