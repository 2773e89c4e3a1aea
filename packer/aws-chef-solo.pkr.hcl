# A role AMI provisioned by chef-solo with the role's run_list. Rendered and checked with
# `packer validate` here (no Chef Infra Client package is reachable from these machines);
# built in a real AWS account, where Packer installs Chef on the instance.

variable "role" { type = string }
variable "digest" { type = string }
variable "version" { type = string }
variable "region" { type = string }
variable "instance_type" { type = string }
variable "source_ami_owner" { type = string }
variable "source_ami_name" { type = string }
variable "ssh_username" { type = string }
variable "cookbooks_dir" { type = string }
variable "roles_dir" {
  type        = string
  description = "where fleet wrote the Chef role fleet-ROLE.json: the run_list and attributes"
}

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

  provisioner "chef-solo" {
    cookbook_paths = [var.cookbooks_dir]
    roles_path     = var.roles_dir
    # Packer 1.6's HCL2 cannot pass a variable into `json`; a Chef role carries the role's
    # run_list and attributes instead, which is how chef-solo is usually fed anyway.
    run_list = ["role[fleet-${var.role}]"]
  }
}
