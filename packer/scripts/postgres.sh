#!/bin/sh
# postgres: primary database, PostgreSQL 15 (Debian bookworm's postgresql-15, in the
# bookworm-postgres base). The cluster lives on the instance's volume, mounted at
# /var/lib/postgresql (cluster: /var/lib/postgresql/15/main), made at first boot; nothing of it
# is in the image. Listens on 0.0.0.0:5432. The application's database is `gitlab`, owned by
# the role `gitlab`, whose password is the node's Vault secret db_password (rendered at
# /run/fleet/secrets/db_password, never baked). See packer/scripts/lib/fleet-postgres and
# fleet-postgres-password.
set -eu
. /tmp/fleet/common.sh
mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql \
  && chmod 0700 /var/lib/postgresql
install_services   # the stand-in's program, which the cattle use; then the real server:
install_postgres
write_settings
