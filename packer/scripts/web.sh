#!/bin/sh
# web: Rails front end (Puma stand-in on the web port).
set -eu
. /tmp/fleet/common.sh
mkdir -p /srv/gitlab/public /etc/gitlab && chmod 0750 /etc/gitlab
install_services
uses_database   # the postgres pet: /etc/fleet/database.env
