# A role image for the lab: the docker builder on the lab's base image, shell provisioners.
# fleet fills every variable from fleet.toml (see fleet/workflows/bake/).

variable "base_image" {
  type        = string
  description = "the base image's id (never a name: a name could be pulled from a registry)"
}
variable "role" { type = string }
variable "digest" {
  type        = string
  description = "the inputs digest, recorded as a label"
}
variable "upload_dir" {
  type        = string
  description = "staged by fleet (bakeinputs.stage_upload): packer/scripts/lib, the role's scripts and its schema migrations (role-migrations/: regular/ and post_deployment/, empty for a role without, for fleet-migrate)"
}
variable "scripts" {
  type        = list(string)
  description = "the role's scripts as uploaded (/tmp/fleet/role-N-NAME, shell-quoted), run in this order"
}
variable "environment" {
  type        = list(string)
  description = "NAME=VALUE pairs for the scripts: FLEET_ROLE, FLEET_SERVICES, FLEET_SETTING_*"
}

locals {
  migrations = "mv /tmp/fleet/role-migrations /opt/fleet/migrations"
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
    source      = "${var.upload_dir}/"
    destination = "/tmp/fleet"
  }

  # One upload and one shell step: the migrations go to /opt/fleet/migrations, every script
  # runs (with its shebang, as Packer's own `scripts` would; the first that fails fails the
  # bake), and /tmp/fleet goes, with the step's own script in it (skip_clean: Packer's
  # clean-up would be two more `docker exec`s). Packer pays a plugin process for each step,
  # and ~0.1 s for each `docker exec`, four for each script or inline step it runs by default:
  # an upload and a step of their own for the migrations, a step per script and another to
  # clean up made a one-script role's bake 1.8 s.
  provisioner "shell" {
    inline           = concat([local.migrations], var.scripts, ["rm -rf /tmp/fleet"])
    environment_vars = var.environment
    remote_path      = "/tmp/fleet/provision.sh"
    skip_clean       = true
  }
}
