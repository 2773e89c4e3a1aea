# A role image for the lab: the docker builder on the lab's base image, shell provisioners.
# fleet fills every variable from fleet.toml (see fleet/workflows/bake.py).

variable "base_image" {
  type        = string
  description = "the base image's id (never a name: a name could be pulled from a registry)"
}
variable "role" { type = string }
variable "digest" {
  type        = string
  description = "the inputs digest, recorded as a label"
}
variable "lib_dir" {
  type        = string
  description = "packer/scripts/lib, uploaded to /tmp/fleet for the role scripts"
}
variable "scripts" { type = list(string) }
variable "migrations_dir" {
  type        = string
  description = "regular/ and post_deployment/: the role's schema migrations (empty for a role without), for fleet-migrate"
}
variable "environment" {
  type        = list(string)
  description = "NAME=VALUE pairs for the scripts: FLEET_ROLE, FLEET_SERVICES, FLEET_SETTING_*"
}

source "docker" "role" {
  image  = var.base_image
  pull   = false
  commit = true
  # The docker builder runs and commits with ENTRYPOINT /bin/sh; a node must start fleet-init.
  changes = [
    "ENTRYPOINT [\"/usr/local/sbin/fleet-init\"]",
    "CMD []",
    "LABEL fleet.role=${var.role} fleet.digest=${var.digest}",
  ]
}

build {
  sources = ["source.docker.role"]

  provisioner "file" {
    source      = "${var.lib_dir}/"
    destination = "/tmp/fleet"
  }

  provisioner "file" {
    source      = "${var.migrations_dir}/"
    destination = "/opt/fleet/migrations"
  }

  provisioner "shell" {
    scripts          = var.scripts
    environment_vars = var.environment
  }

  provisioner "shell" {
    inline = ["rm -rf /tmp/fleet"]
  }
}
