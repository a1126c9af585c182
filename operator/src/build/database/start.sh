#!/bin/sh
# Starts one PostgreSQL instance of a FileStore. An empty volume is filled first: instance 0
# bootstraps a new cluster, once (the operator marks the cluster initialised after that, so a
# lost volume is never mistaken for a new cluster); every other instance clones the primary
# and follows it. Either is built aside and moved into place only when complete, so a pod
# killed half-way starts over rather than from a half-made directory.
#
# A standby (standby.signal) starts as one: it follows the read-write Service, which the
# operator points at whichever instance is primary, so a failover needs no change here. An
# instance without standby.signal is a primary or a former one, and only the operator knows
# which: it waits for its role label (the pod's labels, through the downward API). A label
# change reaches the file within a second or so, not at the kubelet's periodic sync: the kubelet
# takes a change of a pod's labels for an update of the pod (podsDifferSemantically, in
# pkg/kubelet/config), syncs the pod at once, and the sync remounts its downward-API volumes
# (WaitForAttachAndMount -> ReprocessPod); the conformance test "Downward API volume should
# update labels on modification" holds every cluster to it. So the operator's label patch is
# itself the signal, and the pod needs no API access of its own (no token mounted, no RBAC for
# it), nor the operator a way into the pod (pods/exec would let it run anything anywhere).
# "primary" starts it; "replica" (a former primary after a failover) rewinds it onto the new
# primary's timeline, or clones it afresh when it cannot be rewound, and starts it as a standby;
# any other label, "fenced" included, keeps it stopped, so two primaries never serve at once.
set -eu
ordinal="${POD_NAME##*-}"
building="$PGDATA.building"
labels="${POD_LABELS:-/etc/podinfo/labels}"
primary_port="${PRIMARY_PORT:-5432}"

clone_primary() {
  until pg_isready -q -h "$PRIMARY_HOST" -p "$primary_port"; do
    echo "waiting for the primary at $PRIMARY_HOST"
    sleep 2
  done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" \
    -p "$primary_port" -U replicator -D "$building" -X stream -R --checkpoint=fast
}

role() {
  sed -n 's/^filestore\.dev\/role="\(.*\)"$/\1/p' "$labels" 2>/dev/null || true
}

# Removes a postmaster.pid no running server holds. PostgreSQL runs as PID 1 in the pod, so a
# crash (or a grace-0 fence) leaves "1" in it; in the restarted container PID 1 is this script,
# under the same user, and PostgreSQL's lock check, which pg_rewind runs through
# `postgres --single`, takes the file for a live server and refuses ("lock file already
# exists"), turning every rewind into a full clone. A server this script did not start cannot
# run here (one container per data volume), but a live postgres under that PID is left alone.
remove_stale_pid() {
  pidfile="$PGDATA/postmaster.pid"
  [ -f "$pidfile" ] || return 0
  pid="$(head -n 1 "$pidfile")"
  if [ -n "$pid" ] && [ "$pid" != "$$" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
    echo "postmaster.pid names a running postgres ($pid); leaving it"
    return 0
  fi
  echo "removing a stale postmaster.pid (pid $pid)"
  rm -f "$pidfile"
}

# Makes this former primary a standby of the current one.
follow_primary() {
  until pg_isready -q -h "$PRIMARY_HOST" -p "$primary_port"; do
    echo "waiting for the new primary at $PRIMARY_HOST"
    sleep 2
  done
  remove_stale_pid
  if PGPASSWORD="$POSTGRES_SUPERUSER_PASSWORD" pg_rewind --target-pgdata="$PGDATA" \
    --source-server="host=$PRIMARY_HOST port=$primary_port user=postgres dbname=postgres" \
    --config-file=/etc/filestore-db/postgresql.conf; then
    echo "rewound onto the primary's timeline"
  else
    # Its diverged WAL holds only commits no client saw acknowledged (commits wait for a
    # standby); kept aside, not deleted, until the next rejoin.
    echo "pg_rewind failed; cloning the primary afresh"
    rm -rf "$building" "$PGDATA.diverged"
    clone_primary
    mv "$PGDATA" "$PGDATA.diverged"
    mv "$building" "$PGDATA"
  fi
  cat >>"$PGDATA/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=$PRIMARY_HOST port=$primary_port user=replicator password=''$REPLICATION_PASSWORD'' application_name=$POD_NAME'
CONF
  touch "$PGDATA/standby.signal"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  rm -rf "$building" "$PGDATA"
  if [ "$ordinal" = 0 ] && [ "$(cat /etc/filestore-db/initialised)" != true ]; then
    pwfile=/tmp/superuser-password
    printf '%s' "$POSTGRES_SUPERUSER_PASSWORD" > "$pwfile"
    initdb -D "$building" -U postgres --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 --data-checksums
    rm -f "$pwfile"
    pg_ctl -D "$building" -w start \
      -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql"
    psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d postgres \
      -v app_password="$FILESTORE_DATABASE_PASSWORD" \
      -v replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE filestore LOGIN PASSWORD :'app_password';
CREATE DATABASE filestore OWNER filestore;
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replication_password';
SQL
    pg_ctl -D "$building" -m fast -w stop
  else
    clone_primary
  fi
  mv "$building" "$PGDATA"
fi
# PostgreSQL refuses a data directory that its group may write (fsGroup can make it so).
chmod 0700 "$PGDATA"
if [ ! -f "$PGDATA/standby.signal" ]; then
  while :; do
    current="$(role)"
    case "$current" in
      primary) break ;;
      replica) follow_primary; break ;;
    esac
    echo "a primary or a former one, waiting for the operator's role label (now '$current')"
    sleep 1
  done
fi
# application_name (from cluster_name) is what synchronous_standby_names lists.
exec postgres -D "$PGDATA" -c config_file=/etc/filestore-db/postgresql.conf \
  -c cluster_name="$POD_NAME"
