#!/bin/sh
# git: git over SSH front end.
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/git-shell
install_services
