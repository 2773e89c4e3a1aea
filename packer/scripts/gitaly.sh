#!/bin/sh
# gitaly: git storage. Bare repositories under /var/opt/gitaly/repositories, on the instance's
# volume (mounted at /var/opt/gitaly), served by git daemon on port 8075 with a read-only
# switch that survives a reboot; see packer/scripts/lib/fleet-gitaly.
set -eu
. /tmp/fleet/common.sh
install_services   # every declared service's stand-in; then gitaly's own, the real one:
install_gitaly
write_settings
