# Lab cattle for one environment: every node of every server group (role x version) is a
# Docker container on the lab network, created and destroyed by Terraform with built-ins only
# (terraform_data + local-exec: no provider can be downloaded here). fleet computes `nodes`
# for each rollout step; state lives in Terraform's consul backend, one state per environment,
# locked while an apply runs. Images are given by id and never pulled (--pull never): a
# missing image fails the apply instead of reaching for a registry.

terraform {
  required_version = ">= 1.4"
  backend "consul" {}
}

variable "fleet" {
  type        = string
  description = "the fleet's name: every node carries the label fleet.name=<it>, by which fleet lab reset and down tell fleets apart"
}

variable "network" {
  type        = string
  description = "the lab's Docker network"
}

variable "consul_join" {
  type        = string
  description = "the lab Consul server's address on that network"
}

variable "deliver" {
  type        = string
  default     = ""
  description = "the command that hands a new node its Vault credentials (fleet secrets deliver); fleet sets it, a hand-run apply may leave it empty"
}

variable "authorized_keys" {
  type        = string
  default     = ""
  description = "a file mounted read-only as root's authorized_keys: the lab key, for `fleet run` (fleet sets it; empty: no SSH login)"
}

variable "nodes" {
  description = "node name -> what it runs; fleet writes this for each step"
  type = map(object({
    image    = string
    role     = string
    env      = string
    version  = string
    class    = string
    services = string # the Consul service definitions (JSON) the node's agent registers
  }))
}

locals {
  # The lab key's read-only mount, by --mount rather than -v, which splits at the colons a
  # path may hold: --mount's value is a CSV record, its source quoted (quotes doubled) where
  # the path holds a comma or a quote.
  keys_source = length(regexall("[,\"]", var.authorized_keys)) > 0 ? "\"source=${replace(var.authorized_keys, "\"", "\"\"")}\"" : "source=${var.authorized_keys}"
  keys_mount  = "type=bind,${local.keys_source},target=/root/.ssh/authorized_keys,readonly"
}

resource "terraform_data" "node" {
  for_each = var.nodes

  input = {
    name     = each.key
    image    = each.value.image
    role     = each.value.role
    env      = each.value.env
    version  = each.value.version
    class    = each.value.class
    services = each.value.services
    network  = var.network
    join     = var.consul_join
  }
  # a node is cattle: any change replaces it
  triggers_replace = [each.value.image, each.value.services]

  provisioner "local-exec" {
    # An apply cut short (its fleet killed) may have started this very node without recording
    # it: adopt it if it runs this image, or else stop it and start afresh. A node of the same
    # name still draining (see destroy) is let go first, until its container is removed: two
    # agents may not share a name, and the drain forces the old one out of Consul first.
    # /run/fleet is a tmpfs: the node's rendered secrets never touch a disk or an image. The
    # lab key's public half is mounted read-only as root's authorized_keys (never baked), so
    # `fleet run` reaches cattle for diagnostics as it reaches pets.
    # A member of the same name that Consul still lists as left or failed (an earlier node of
    # this name: a rollback brings a version's names back) is pruned before the new one joins:
    # joining over it, the new member was often not marked alive by the leader until its next
    # full reconcile, a minute later, and the rollout's step waited that minute for it.
    # The pruned node's leave may still be gossiped for seconds after, at a higher incarnation
    # than the new node's first: the servers then call the new node failed, which it refutes
    # only once it hears it; fleet-node joins the servers again until they call it alive.
    # A member of the same name that did not leave by itself (alive, leaving or failed: a
    # killed node that apply's repair or the reconciler replaces) keeps its address: the new
    # node is started at it when it is free. Consul's memberlist refuses a name at a new
    # address ('Conflicting address') until the old member has been dead for 30 s
    # (DeadNodeReclaimTime, not a setting), and its probes find a dead agent only after the
    # suspicion timeout: a killed node's replacement waited up to a minute to be a member, while
    # the old member's status stood for it. At the old address the new agent answers the
    # probes and refutes what is said of the old one as soon as it joins. Docker hands out
    # addresses in turn, so the old one is usually free; when it is not, the node gets another.
    # Then the node gets its Vault credentials (an adopted one too: its first delivery may be
    # what the cut-short apply missed): `fleet secrets deliver` hands it a RoleID and a
    # response-wrapped single-use SecretID over `docker exec` stdin, so neither is in this
    # state, an argv or the container's environment.
    command = <<-EOT
      set -e
      n=0
      while docker inspect ${self.input.name}.draining >/dev/null 2>&1 && [ $n -lt 240 ]; do
        sleep 0.5; n=$((n + 1))
      done
      found=$(docker inspect -f '{{.State.Running}} {{.Image}}' ${self.input.name} 2>/dev/null || true)
      if [ "$found" != "true ${self.input.image}" ]; then
        if [ -n "$found" ]; then
          docker stop -t 10 ${self.input.name} >/dev/null 2>&1 || true
          docker rm -f ${self.input.name} >/dev/null 2>&1 || true
        fi
        member=$(consul members 2>/dev/null | awk -v node=${self.input.name} \
          '$1 == node { split($2, at, ":"); print $3, at[1] }')
        pin=
        case "$member" in
          left\ * | failed\ *) consul force-leave -prune ${self.input.name} >/dev/null 2>&1 || true ;;
        esac
        case "$member" in
          alive\ * | leaving\ * | failed\ *) pin="--ip $${member#* }" ;;
        esac
        run() {
          docker run -d --pull never --name ${self.input.name} --hostname ${self.input.name} \
          --network ${self.input.network} "$@" --restart unless-stopped --tmpfs /run/fleet:mode=0700 \
          --label fleet.lab=1 --label fleet.name=${var.fleet} --label fleet.role=${self.input.role} \
          --label fleet.env=${self.input.env} --label fleet.version=${self.input.version} \
          -e "FLEET_CONSUL_JOIN=${self.input.join}" -e FLEET_CONSUL_DATACENTER=lab \
          -e FLEET_ROLE=${self.input.role} -e FLEET_ENV=${self.input.env} \
          -e FLEET_VERSION=${self.input.version} -e FLEET_CONSUL_SERVICES \
          %{if var.authorized_keys != ""}--mount "$FLEET_KEYS_MOUNT"%{endif} \
          ${self.input.image} >/dev/null
        }
        if [ -z "$pin" ] || ! run $pin 2>/dev/null; then
          [ -z "$pin" ] || docker rm -f ${self.input.name} >/dev/null 2>&1 || true
          run
        fi
      fi
      %{if var.deliver != ""}${var.deliver} ${self.input.name} ${self.input.role} ${self.input.env}%{endif}
    EOT
    environment = {
      # The agent's node ID is derived from the node's name, not drawn at random: a node
      # created again under its name (apply's repair of a dead one) is the same node to
      # Consul, which otherwise refuses to register a new ID under a name that a member it
      # still calls alive holds (and keeps the dead node's registration, passing).
      FLEET_CONSUL_SERVICES = jsonencode(merge(jsondecode(self.input.services), {
        node_id = uuidv5("url", "fleet-node:${self.input.name}")
      }))
      FLEET_KEYS_MOUNT = local.keys_mount
    }
  }

  provisioner "local-exec" {
    # Like a cloud instance's termination, a node drains after the apply returns: renamed
    # at once (its name is free for a new node), then SIGTERM makes its agent leave Consul
    # (~1.5 s: fleet-init goes once the servers call it left) and the container goes.
    # A node that cannot leave by itself would stay in Consul as a failed member, in the
    # catalog, for 72 h: one killed (kill -9, docker rm -f, stopped past the timeout), one
    # without its Consul token (its agent refuses `consul leave`: 403), or one whose leave
    # the lab's gossip lost (it goes to random members, and a crowded lab has many that are
    # dead and not yet found out). So once the container has stopped, the node is forced
    # out, with the operator token Terraform runs with (operator:write):
    # - failed, or left: `consul force-leave -prune` marks it left and drops it from the
    #   member list; the leader deregisters it at once (with what a leaving agent's last
    #   sync may have put back in the catalog);
    # - alive (Consul has not noticed the agent is gone: probes and suspicion take minutes
    #   in the lab): `consul force-leave` marks it leaving, so that Consul calls it left,
    #   never failed, when it notices, and it is deregistered from the catalog now
    #   (node:write; the leader registers again only members it calls alive or failed, and
    #   a leaving one is neither). A leaving one gets 5 s to be left, then is deregistered
    #   likewise. Neither is pruned: pruning a member Consul calls alive or leaving makes
    #   every agent hold its member list for ~8 s.
    # A node whose container is already gone (it died: fleet plan calls it drift, and apply
    # replaces it under the same name) is drained before the apply goes on, but one Consul
    # still calls alive is not marked leaving: its replacement, with the same node ID, takes
    # the name back at once, which a leave would muddle. It is deregistered from the catalog
    # all the same: its services stood there passing, and the new agent, finding them the
    # same as its own, would only have updated their checks, so a wait for the replacement
    # to pass was met by the dead node's registration. A watcher prunes the member once
    # Consul calls it failed or left (up to 10 min), unless a container of that name runs.
    # Otherwise the drain runs after the apply returns, and a node of the same name waits
    # for its container to go (see the create provisioner).
    when    = destroy
    command = <<-EOT
      name=${self.input.name}
      if docker rename $name $name.draining 2>/dev/null; then
        setsid sh -c "$DRAIN" drain $name.draining $name stopped </dev/null >/dev/null 2>&1 &
      else
        sh -c "$DRAIN" drain $name $name gone
        setsid sh -c "$WATCH" watch $name </dev/null >/dev/null 2>&1 &
      fi
    EOT
    environment = {
      DRAIN = <<-EOT
        container=$1 node=$2 how=$3
        member() { consul members 2>/dev/null | awk -v node="$node" '$1 == node { print $3 }'; }
        docker stop -t 10 "$container" >/dev/null 2>&1
        status=$(member)
        n=0
        while [ "$status" = leaving ] && [ $n -lt 5 ] && [ "$how" = stopped ]; do
          sleep 1; n=$((n + 1)); status=$(member)
        done
        deregister() {
          python3 - "$node" >/dev/null 2>&1 <<'PY'
        import json, os, sys, urllib.request
        address = os.environ.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
        address = address if "//" in address else "http://" + address
        urllib.request.urlopen(urllib.request.Request(
            address + "/v1/catalog/deregister", method="PUT",
            data=json.dumps({"Node": sys.argv[1]}).encode(),
            headers={"X-Consul-Token": os.environ.get("CONSUL_HTTP_TOKEN", "")}), timeout=10)
        PY
        }
        case "$status:$how" in
          failed:* | left:*) consul force-leave -prune "$node" >/dev/null 2>&1 ;;
          alive:stopped) consul force-leave "$node" >/dev/null 2>&1; deregister ;;
          leaving:* | alive:gone) deregister ;;
        esac
        docker rm -f "$container" >/dev/null 2>&1
        exit 0
      EOT
      WATCH = <<-EOT
        node=$1
        n=0
        while [ $n -lt 60 ]; do
          sleep 10; n=$((n + 1))
          [ "$(docker inspect -f '{{.State.Running}}' "$node" 2>/dev/null)" = true ] && exit 0
          case "$(consul members 2>/dev/null | awk -v node="$node" '$1 == node { print $3 }')" in
            alive | leaving) ;;
            failed | left) consul force-leave -prune "$node" >/dev/null 2>&1; exit 0 ;;
            *) exit 0 ;;
          esac
        done
      EOT
    }
  }
}

output "nodes" {
  value = { for name, node in terraform_data.node : name => node.input.version }
}
