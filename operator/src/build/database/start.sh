#!/bin/sh
# Starts one PostgreSQL instance of a FileStore. An empty volume is filled first: instance 0
# bootstraps a new cluster, once (the operator marks the cluster initialised after that, so a
# lost volume is never mistaken for a new cluster); every other instance clones the primary
# and follows it. Either is built aside and moved into place only when complete, so a pod
# killed half-way starts over rather than from a half-made directory. Primary or standby is
# then up to standby.signal; the settings are the same on every instance, so a promoted
# standby needs no restart.
set -eu
ordinal="${POD_NAME##*-}"
building="$PGDATA.building"
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
    until pg_isready -q -h "$PRIMARY_HOST" -p "${PRIMARY_PORT:-5432}"; do
      echo "waiting for the primary at $PRIMARY_HOST"
      sleep 2
    done
    PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup -h "$PRIMARY_HOST" \
      -p "${PRIMARY_PORT:-5432}" -U replicator -D "$building" -X stream -R --checkpoint=fast
  fi
  mv "$building" "$PGDATA"
fi
# PostgreSQL refuses a data directory that its group may write (fsGroup can make it so).
chmod 0700 "$PGDATA"
# application_name (from cluster_name) is what synchronous_standby_names lists.
exec postgres -D "$PGDATA" -c config_file=/etc/filestore-db/postgresql.conf \
  -c cluster_name="$POD_NAME"
