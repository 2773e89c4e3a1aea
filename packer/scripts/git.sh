#!/bin/sh
# git: git over SSH front end; places new repositories on the gitaly storages by weight.
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/git-shell
install_services
places_repositories
