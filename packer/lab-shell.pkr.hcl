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
variable "uploads" {
  type        = string
  description = "the source field (docker.mount_source) of the folder staged by fleet (bakeinputs.stage_upload), mounted read-only in the build container: packer/scripts/lib, the role's scripts and its schema migrations (role-migrations/: regular/ and post_deployment/, empty for a role without, for fleet-migrate)"
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
  uploads    = "ln -s /mnt /tmp/fleet"
  migrations = "cp -a /tmp/fleet/role-migrations /opt/fleet/migrations"
  cleanup    = "rm -f /tmp/fleet /tmp/fleet-provision.sh"
}

source "docker" "role" {
  image  = var.base_image
  pull   = false
  commit = true
  # The build container has no network (--network=none, as `docker build --network=none`):
  # a bake reaches nothing outside its image and uploads, and Docker sets up no bridge
  # endpoint for it (~0.09 s less per bake, and two bakes at once contend less in dockerd).
  # The staged uploads are bind-mounted read-only instead of copied in by a file provisioner
  # (a plugin process, a `docker cp` and an untar in dockerd less). A commit leaves a mount's
  # contents out of the image, and /mnt is the base's own empty mount point: the image keeps
  # nothing of the uploads (the scripts find them at /tmp/fleet, a link made for the step).
  run_command = [
    "-d", "-i", "-t", "--network=none", "--mount", "type=bind,${var.uploads},target=/mnt,readonly",
    "--entrypoint=/bin/sh", "--", "{{.Image}}",
  ]
  # The docker builder runs and commits with ENTRYPOINT /bin/sh; a node must start fleet-init.
  changes = [
    "ENTRYPOINT [\"/usr/local/sbin/fleet-init\"]",
    "CMD []",
    "LABEL fleet.role=${var.role} fleet.digest=${var.digest}",
  ]
}

build {
  sources = ["source.docker.role"]

  # One shell step: the migrations go to /opt/fleet/migrations, every script runs (with its
  # shebang, as Packer's own `scripts` would; the first that fails fails the bake), and the
  # link and the step's own script go (skip_clean: Packer's clean-up would be two more
  # `docker exec`s).
  # Packer pays a plugin process for each step, and ~0.1 s for each `docker exec`, four for
  # each script or inline step it runs by default: an upload and a step of their own for the
  # migrations, a step per script and another to clean up made a one-script role's bake 1.8 s.
  provisioner "shell" {
    inline = concat([local.uploads, local.migrations], var.scripts,
    ["rm -f /tmp/fleet /tmp/fleet-provision.sh"])
    environment_vars = var.environment
    remote_path      = "/tmp/fleet-provision.sh"
    skip_clean       = true
  }
}
