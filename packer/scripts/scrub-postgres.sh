#!/bin/sh
# The postgres role's scrub step (`fleet env refresh`): it runs on a copy of another
# environment's data before this environment's postgres ever sees it, in a one-shot container
# of the postgres image with no network, as root; FLEET_DATA is where the copy is (the volume's
# mount, /var/lib/postgresql), FLEET_SOURCE_ENV where it came from. Two parts:
# - The PostgreSQL cluster of the copy (FLEET_DATA/15/main, a copy of a running server: it
#   recovers from its WAL first) is started on a Unix socket of its own only
#   (listen_addresses = ''), and in every database that accepts connections every column
#   named `email` of an ordinary table is masked (masked-<random>@example.invalid, so a unique
#   index still holds; NULLs stay NULL), then the server is stopped cleanly (a checkpoint).
# - Every plain text file outside the cluster (an export, a CSV dropped on the volume) has its
#   email addresses masked (masked@example.invalid). The cluster's own files are never edited
#   as text.
# A non-zero exit fails the refresh, and the copy is dropped.
set -eu
: "${FLEET_DATA:?FLEET_DATA names the data to scrub}"
CLUSTER="$FLEET_DATA/15/main"
BIN=/usr/lib/postgresql/15/bin

address='[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}'
find "$FLEET_DATA" -path "$FLEET_DATA/15" -prune -o -type f -exec grep -IlE "$address" {} + |
  while IFS= read -r file; do
    sed -E -i "s/$address/masked@example.invalid/g" "$file"
    echo "masked the email addresses in $file"
  done

[ -f "$CLUSTER/PG_VERSION" ] || exit 0
sockets=$(mktemp -d /tmp/scrub-postgres.XXXXXX)
chown postgres:postgres "$sockets"
rm -f "$CLUSTER/postmaster.pid"  # the copy's: that server does not run here
as_postgres() { runuser -u postgres -- "$@"; }
stop() { as_postgres "$BIN/pg_ctl" -D "$CLUSTER" -m fast -w stop >/dev/null 2>&1 || true; }
if ! as_postgres "$BIN/pg_ctl" -D "$CLUSTER" -w -t 300 -l "$sockets/server.log" \
     -o "-c listen_addresses='' -c unix_socket_directories='$sockets'" start >/dev/null; then
  tail -n 5 "$sockets/server.log" >&2
  echo "the copy's PostgreSQL cluster did not start" >&2
  exit 1
fi
trap stop EXIT
sql() { as_postgres "$BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$sockets" "$@"; }
for db in $(sql -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1"); do
  sql -d "$db" -c "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE a.attname = 'email' AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1" |
    while IFS= read -r table; do
      count=$(sql -d "$db" -c "WITH done AS (UPDATE $table SET email =
          'masked-' || substr(md5(random()::text || clock_timestamp()::text), 1, 16)
          || '@example.invalid' WHERE email IS NOT NULL RETURNING 1)
        SELECT count(*) FROM done")
      echo "masked $count email(s) in $db: $table"
    done
done
trap - EXIT
as_postgres "$BIN/pg_ctl" -D "$CLUSTER" -m fast -w stop >/dev/null
rm -rf "$sockets"
