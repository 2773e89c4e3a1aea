# Lab pets and snowflakes of one environment: each instance is a Docker container on the lab
# network, created by Terraform with built-ins only (terraform_data + local-exec: no provider
# can be downloaded here). State lives in Terraform's consul backend, one state per
# environment, locked while a plan or an apply runs. Images are given by id and never pulled.
#
# Pets keep their data on a named Docker volume that outlives the container, and the volume
# carries prevent_destroy: Terraform itself refuses a plan that would delete a pet's data.
# fleet refuses, before Terraform, any plan that would destroy or replace a pet container
# unless --allow-replace names it. A pet's settings are updated in place (no replace
# trigger): `fleet converge` applies them on the running node over SSH.

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
  description = "the command that hands a new node its Consul token and Vault credentials (fleet secrets deliver); fleet sets it, a hand-run apply may leave it empty"
}

variable "authorized_keys" {
  type        = string
  description = "the lab key's public half, mounted read-only as root's authorized_keys"
}

variable "pets" {
  description = "instance name -> what it runs; fleet writes this from fleet.toml"
  type = map(object({
    container = string # the container's name and hostname: fleet name + instance
    image     = string
    role      = string
    env       = string
    version   = string
    services  = string # the Consul service definitions (JSON) the node's agent registers
    volume    = string # the named Docker volume holding the pet's data
    data_path = string # where the volume is mounted
    settings  = string # the role's settings (JSON): updated in place, applied by converge
  }))
}

variable "snowflakes" {
  description = "instance name -> what it runs; changed only when fleet apply names it"
  type = map(object({
    container = string
    image     = string
    role      = string
    env       = string
    version   = string
    services  = string
    settings  = string
  }))
}

locals {
  # The lab key's read-only mount, by --mount rather than -v, which splits at the colons a
  # path may hold: --mount's value is a CSV record, its source quoted (quotes doubled) where
  # the path holds a comma or a quote.
  keys_source = length(regexall("[,\"]", var.authorized_keys)) > 0 ? "\"source=${replace(var.authorized_keys, "\"", "\"\"")}\"" : "source=${var.authorized_keys}"
  keys_mount  = "type=bind,${local.keys_source},target=/root/.ssh/authorized_keys,readonly"
  # The same `docker run` for pets and snowflakes; a pet adds its data volume. /run/fleet is a
  # tmpfs: rendered secrets and the node's Consul token never touch a disk. Then the node gets
  # its credentials over `docker exec` stdin (see terraform/lab/cattle): none is in this state.
  run = <<-EOT
    set -e
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker run -d --pull never --name "$NAME" --hostname "$NAME" \
      --network "$NETWORK" --restart unless-stopped --tmpfs /run/fleet:mode=0700 \
      --label fleet.lab=1 --label fleet.name="${var.fleet}" --label fleet.role="$ROLE" --label fleet.env="$FLEET_ENV" \
      --label fleet.version="$VERSION" --label fleet.class="$CLASS" \
      --mount "$KEYS_MOUNT" $VOLUME \
      -e FLEET_CONSUL_JOIN="$JOIN" -e FLEET_CONSUL_DATACENTER=lab \
      -e FLEET_ROLE="$ROLE" -e FLEET_ENV="$FLEET_ENV" -e FLEET_VERSION="$VERSION" \
      -e FLEET_CONSUL_SERVICES "$IMAGE" >/dev/null
    %{if var.deliver != ""}${var.deliver} "$NAME" "$ROLE" "$FLEET_ENV"%{endif}
  EOT
}

resource "terraform_data" "pet_data" {
  for_each = var.pets

  input = { volume = each.value.volume }

  provisioner "local-exec" {
    command = "docker volume create --label fleet.lab=1 --label fleet.name=${var.fleet} ${self.input.volume} >/dev/null"
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "terraform_data" "pet" {
  for_each = var.pets

  input = {
    name      = each.value.container
    image     = each.value.image
    role      = each.value.role
    env       = each.value.env
    version   = each.value.version
    services  = each.value.services
    volume    = terraform_data.pet_data[each.key].input.volume
    data_path = each.value.data_path
    settings  = each.value.settings
    network   = var.network
    join      = var.consul_join
    keys      = var.authorized_keys
  }
  # a new image is a new container on the same volume; settings change in place
  triggers_replace = [each.value.image, each.value.services, each.value.data_path]

  provisioner "local-exec" {
    command = local.run
    environment = {
      NAME                  = self.input.name, IMAGE = self.input.image, ROLE = self.input.role,
      FLEET_ENV             = self.input.env, VERSION = self.input.version, CLASS = "pet",
      NETWORK               = self.input.network, JOIN = self.input.join, KEYS_MOUNT = local.keys_mount,
      VOLUME                = "-v ${self.input.volume}:${self.input.data_path}",
      FLEET_CONSUL_SERVICES = self.input.services
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "sh ${path.module}/remove.sh ${self.input.name}" # and out of Consul: see there
  }
}

resource "terraform_data" "snowflake" {
  for_each = var.snowflakes

  input = {
    name     = each.value.container
    image    = each.value.image
    role     = each.value.role
    env      = each.value.env
    version  = each.value.version
    services = each.value.services
    settings = each.value.settings
    network  = var.network
    join     = var.consul_join
    keys     = var.authorized_keys
  }
  triggers_replace = [each.value.image, each.value.services]

  provisioner "local-exec" {
    command = local.run
    environment = {
      NAME      = self.input.name, IMAGE = self.input.image, ROLE = self.input.role,
      FLEET_ENV = self.input.env, VERSION = self.input.version, CLASS = "snowflake",
      NETWORK   = self.input.network, JOIN = self.input.join, KEYS_MOUNT = local.keys_mount,
      VOLUME    = "", FLEET_CONSUL_SERVICES = self.input.services
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "sh ${path.module}/remove.sh ${self.input.name}" # and out of Consul: see there
  }
}

output "instances" {
  description = "instance name -> its container"
  value = merge(
    { for name, node in terraform_data.pet : name => node.input.name },
    { for name, node in terraform_data.snowflake : name => node.input.name },
  )
}
