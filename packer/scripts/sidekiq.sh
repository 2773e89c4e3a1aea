#!/bin/sh
# sidekiq: background job workers.
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/sidekiq /etc/gitlab && chmod 0750 /etc/gitlab
install_services
