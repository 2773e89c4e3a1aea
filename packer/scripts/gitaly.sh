#!/bin/sh
# gitaly: git storage; repositories live on the instance's volume.
set -eu
. /tmp/fleet/common.sh
mkdir -p /var/opt/gitaly && chmod 0700 /var/opt/gitaly
install_services
write_settings
