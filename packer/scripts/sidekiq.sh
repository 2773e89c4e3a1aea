#!/bin/sh
# sidekiq: background job workers.
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/sidekiq /etc/gitlab && chmod 0750 /etc/gitlab
install_services
uses_database   # the postgres pet: /etc/fleet/database.env
