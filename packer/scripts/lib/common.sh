# Sourced by the role scripts. FLEET_SERVICES comes from fleet.toml at bake time:
# space-separated NAME:KIND:PORT (KIND is the health check type, http or tcp).
install_services() {
  install -m 0755 /tmp/fleet/fleet-service.py /usr/local/bin/fleet-service
  for spec in ${FLEET_SERVICES:-}; do
    name=${spec%%:*}; rest=${spec#*:}; kind=${rest%%:*}; port=${rest#*:}
    printf '#!/bin/sh\nexec /usr/local/bin/fleet-service %s %s %s\n' "$kind" "$port" "$name" \
      > "/etc/fleet/services.d/$name"
    chmod 0755 "/etc/fleet/services.d/$name"
  done
}

# The role's settings (FLEET_SETTING_*), where the node's software reads them; rewritten by
# every bake and every `fleet converge`.
write_settings() {
  mkdir -p /etc/fleet
  env | grep '^FLEET_SETTING_' | sort > /etc/fleet/settings.env || true
  chmod 0644 /etc/fleet/settings.env
}

# The postgres pet's real server in place of its stand-in (see fleet-postgres and
# fleet-postgres-password for what they do): two supervised services.
install_postgres() {
  install -m 0755 /tmp/fleet/fleet-postgres /usr/local/sbin/fleet-postgres
  install -m 0755 /tmp/fleet/fleet-postgres-password /usr/local/sbin/fleet-postgres-password
  printf '#!/bin/sh\nexec /usr/local/sbin/fleet-postgres\n' > /etc/fleet/services.d/postgres
  printf '#!/bin/sh\nexec /usr/local/sbin/fleet-postgres-password\n' \
    > /etc/fleet/services.d/postgres-password
  chmod 0755 /etc/fleet/services.d/postgres /etc/fleet/services.d/postgres-password
}

# The gitaly pet's git storage in place of its stand-in (see fleet-gitaly for what it does):
# the user `git` owns the repositories and runs git daemon; every push on this node, whichever
# way it comes, passes fleet-gitaly's pre-receive hook (the read-only switch); refs and objects
# are fsynced before a push is acknowledged, and what is pushed is checked (fsck) on the way in.
install_gitaly() {
  if ! command -v git >/dev/null 2>&1; then
    echo "install_gitaly: this image has no git (its base predates git in [bases.bookworm]):" \
      "bake gitaly again and give the pet the new image" >&2
    exit 1
  fi
  id -u git >/dev/null 2>&1 \
    || useradd --system --user-group --home-dir /nonexistent --no-create-home \
         --shell /usr/sbin/nologin git
  install -m 0755 /tmp/fleet/fleet-gitaly /usr/local/sbin/fleet-gitaly
  ln -sf fleet-gitaly /usr/local/sbin/fleet-data   # what `fleet move` calls on a pet
  mkdir -p /usr/local/lib/fleet-gitaly/hooks
  ln -sf /usr/local/sbin/fleet-gitaly /usr/local/lib/fleet-gitaly/hooks/pre-receive
  git config --system core.hooksPath /usr/local/lib/fleet-gitaly/hooks
  git config --system core.fsync committed
  git config --system receive.fsckObjects true
  mkdir -p /var/opt/gitaly
  chown git:git /var/opt/gitaly && chmod 0700 /var/opt/gitaly
  printf '#!/bin/sh\nexec /usr/local/sbin/fleet-gitaly serve\n' > /etc/fleet/services.d/gitaly
  chmod 0755 /etc/fleet/services.d/gitaly
}

# A role whose software uses the postgres pet's database: where it finds it, read by
# fleet-service (and by anything else of the image that connects, migrations included).
# The address is the passing postgres instance of the environment whose pets this node uses,
# rendered by the node's Consul watch into /etc/fleet/upstreams.json; the password is the
# node's Vault secret db_password, rendered by fleet-node on the tmpfs. No value is baked.
uses_database() {
  mkdir -p /etc/fleet
  cat > /etc/fleet/database.env <<'ENV'
FLEET_DB_SERVICE=postgres
FLEET_DB_NAME=gitlab
FLEET_DB_USER=gitlab
FLEET_DB_PASSWORD_FILE=/run/fleet/secrets/db_password
FLEET_DB_UPSTREAMS_FILE=/etc/fleet/upstreams.json
ENV
  chmod 0644 /etc/fleet/database.env
}

# A front end that places new repositories on the gitaly storages by their Consul weights
# (see fleet-service's place): which service, and where the node's Consul watch renders each
# passing instance's weight.
places_repositories() {
  mkdir -p /etc/fleet
  cat > /etc/fleet/storage.env <<'ENV'
FLEET_STORAGE_SERVICE=gitaly
FLEET_STORAGE_WEIGHTS_FILE=/etc/fleet/weights.json
ENV
  chmod 0644 /etc/fleet/storage.env
}
