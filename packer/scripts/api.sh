#!/bin/sh
# api: REST and GraphQL API.
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/gitlab /etc/gitlab && chmod 0750 /etc/gitlab
install_services
uses_database   # the postgres pet: /etc/fleet/database.env
