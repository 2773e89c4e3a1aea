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
    # name still draining (see destroy) is let go first: two agents may not share a name.
    # /run/fleet is a tmpfs: the node's rendered secrets never touch a disk or an image.
    # Then the node gets its Vault credentials (an adopted one too: its first delivery may be
    # what the cut-short apply missed): `fleet secrets deliver` hands it a RoleID and a
    # response-wrapped single-use SecretID over `docker exec` stdin, so neither is in this
    # state, an argv or the container's environment.
    command = <<-EOT
      set -e
      docker wait ${self.input.name}.draining >/dev/null 2>&1 || true
      found=$(docker inspect -f '{{.State.Running}} {{.Image}}' ${self.input.name} 2>/dev/null || true)
      if [ "$found" != "true ${self.input.image}" ]; then
        if [ -n "$found" ]; then
          docker stop -t 10 ${self.input.name} >/dev/null 2>&1 || true
          docker rm -f ${self.input.name} >/dev/null 2>&1 || true
        fi
        docker run -d --pull never --name ${self.input.name} --hostname ${self.input.name} \
          --network ${self.input.network} --restart unless-stopped --tmpfs /run/fleet:mode=0700 \
          --label fleet.lab=1 --label fleet.role=${self.input.role} \
          --label fleet.env=${self.input.env} --label fleet.version=${self.input.version} \
          -e FLEET_CONSUL_JOIN=${self.input.join} -e FLEET_CONSUL_DATACENTER=lab \
          -e FLEET_ROLE=${self.input.role} -e FLEET_ENV=${self.input.env} \
          -e FLEET_VERSION=${self.input.version} -e FLEET_CONSUL_SERVICES \
          ${self.input.image} >/dev/null
      fi
      %{if var.deliver != ""}${var.deliver} ${self.input.name} ${self.input.role} ${self.input.env}%{endif}
    EOT
    environment = {
      FLEET_CONSUL_SERVICES = self.input.services
    }
  }

  provisioner "local-exec" {
    # Like a cloud instance's termination, a node drains after the apply returns: renamed
    # at once (its name is free for a new node), then SIGTERM makes its agent leave Consul,
    # which alone takes Consul ~3.5 s, and the container goes.
    when    = destroy
    command = <<-EOT
      name=${self.input.name}
      docker rename $name $name.draining 2>/dev/null && name=$name.draining
      setsid sh -c "docker stop -t 10 $name; docker rm -f $name" </dev/null >/dev/null 2>&1 &
    EOT
  }
}

output "nodes" {
  value = { for name, node in terraform_data.node : name => node.input.version }
}
