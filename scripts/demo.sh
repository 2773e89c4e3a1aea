#!/usr/bin/env bash
# The main job on the example fleet: install, bring the lab up, validate, sync the secrets'
# policies and fill in missing lab secrets, bake every role the lab can bake -- cattle, pets and
# snowflakes; the chef-solo role is listed as skipped -- (then again, cached), list the catalog,
# plan (it wants no bake any more) and apply the pets and snowflakes in depends_on order, promote
# the baked version canary -> staging -> production (--wait waits out each soak; production needs
# manual approval: --yes), then show that nothing is left to do, what runs where and what
# happened, what pruning old images would remove (it keeps the newest 3 of each role and
# whatever is in use), and scan everything for leaked secrets.
# A second run finds everything done and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
fleet=.venv/bin/fleet
$fleet lab up
$fleet validate
# Secrets: each role's policy and AppRole per environment, then a random lab value for every
# declared secret still missing (piped in: a value never goes on a command line). Nodes get
# theirs from Vault at boot.
$fleet secrets sync
{ $fleet secrets check --json || true; } | .venv/bin/python -c '
import json, sys
for m in json.load(sys.stdin)["missing"]:
    print(m["role"], m["key"], m["env"])' | while read -r role key env; do
  head -c 24 /dev/urandom | base64 | $fleet secrets put "$role" "$key" --env "$env"
done
$fleet secrets check
# --all: every role the plan wants an image of; the first baked role's version names them all
version=$($fleet bake --all --json | .venv/bin/python -c \
  'import json, sys; print(next(r["version"] for r in json.load(sys.stdin)["results"] if r["version"]))')
$fleet bake --all --version "$version"   # unchanged inputs: every role says "cached"
$fleet images

# One plan for everything; apply builds the pets and snowflakes (their nodes get their Consul
# tokens and secrets at boot) before the cattle that depend on them are promoted.
$fleet plan
$fleet apply --yes

# --wait also waits out the soak of the environment before
$fleet promote "$version" --to canary --wait
$fleet promote "$version" --to staging --wait
$fleet promote "$version" --to production --wait --yes
$fleet plan --detailed-exitcode   # 0: nothing left to do
$fleet status
$fleet history production
$fleet images prune --dry-run   # what retention would remove; `fleet images prune` removes it
$fleet secrets scan   # no secret value in any image, node disk, log, Terraform state or KV
$fleet lab status
