# A role AMI: amazon-ebs from Debian's AMI, shell provisioners. Rendered and checked with
# `packer validate` here; built in a real AWS account.

variable "role" { type = string }
variable "digest" { type = string }
variable "version" { type = string }
variable "region" { type = string }
variable "instance_type" { type = string }
variable "source_ami_owner" { type = string }
variable "source_ami_name" { type = string }
variable "ssh_username" { type = string }
variable "lib_dir" { type = string }
variable "scripts" { type = list(string) }
variable "environment" { type = list(string) }

source "amazon-ebs" "role" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "fleet-${var.role}-${var.version}"
  source_ami_filter {
    owners      = [var.source_ami_owner]
    most_recent = true
    filters = {
      name                = var.source_ami_name
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }
  tags = {
    "fleet:role"   = var.role
    "fleet:digest" = var.digest
  }
}

build {
  sources = ["source.amazon-ebs.role"]

  provisioner "file" {
    source      = "${var.lib_dir}/"
    destination = "/tmp/fleet"
  }

  provisioner "shell" {
    scripts          = var.scripts
    environment_vars = var.environment
    execute_command  = "sudo sh -c '{{ .Vars }} {{ .Path }}'"
  }
}
