#!/bin/sh
# postgres: primary database; the cluster lives on the instance's volume.
set -eu
. /tmp/fleet/common.sh
mkdir -p /var/lib/postgresql && chmod 0700 /var/lib/postgresql
install_services
write_settings
