#!/bin/sh
# redis: cache and job queue; the append-only file lives on the instance's volume.
set -eu
. /tmp/fleet/common.sh
mkdir -p /var/lib/redis && chmod 0750 /var/lib/redis
install_services
write_settings
