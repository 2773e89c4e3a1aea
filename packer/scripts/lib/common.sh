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
