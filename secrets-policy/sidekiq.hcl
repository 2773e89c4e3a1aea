# sidekiq: read its own secrets in its own environment, nothing else. fleet fills {{mount}} (the
# fleet's kv-v2 mount) and {{env}} and writes one policy per environment: `fleet secrets sync`.
path "{{mount}}/data/sidekiq/{{env}}" {
  capabilities = ["read"]
}
