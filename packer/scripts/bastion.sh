#!/bin/sh
# bastion: SSH jump host: sshd only, no role service.
set -eu
. /tmp/fleet/common.sh
install -d -m 0700 /etc/ssh/authorized_keys.d
install_services
