# aws cattle for one environment: one launch template and one autoscaling group per server
# group (role x version), the same desired groups fleet hands the lab module at every rollout
# step. Rendered and checked here with `terraform fmt -check` only: the aws provider cannot be
# downloaded on these machines; `terraform init` + `plan` run in a real account.
# State: Terraform's consul backend, one state per environment, as in the lab.

terraform {
  required_version = ">= 1.4"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
  backend "consul" {}
}

provider "aws" {
  region = var.region
}

variable "region" {
  type = string
}

variable "fleet" {
  type        = string
  description = "the fleet's name (fleet.toml [fleet].name)"
}

variable "env" {
  type = string
}

variable "instance_type" {
  type = string
}

variable "subnet_ids" {
  type        = list(string)
  description = "where the groups' instances run"
}

variable "security_group_ids" {
  type = list(string)
}

variable "consul_join" {
  type        = string
  description = "the consul agents' -retry-join, e.g. \"provider=aws tag_key=consul tag_value=server\""
}

variable "groups" {
  description = "server group name -> what it runs and how many; fleet writes this for each step"
  type = map(object({
    role     = string
    version  = string
    ami      = string # the baked image's AMI id, from the catalog
    count    = number # 0 keeps the group (and its launch template) for a fast rollback
    services = string # the Consul service definitions (JSON) the node's agent registers
  }))
}

resource "aws_launch_template" "group" {
  for_each = var.groups

  name_prefix   = "${var.fleet}-${each.key}-"
  image_id      = each.value.ami
  instance_type = var.instance_type

  vpc_security_group_ids = var.security_group_ids

  # Only where to join and what to register: secrets come from Vault at boot, never from here.
  user_data = base64encode(join("\n", [
    "FLEET_CONSUL_JOIN='${var.consul_join}'",
    "FLEET_ROLE=${each.value.role}",
    "FLEET_ENV=${var.env}",
    "FLEET_VERSION=${each.value.version}",
    "FLEET_CONSUL_SERVICES='${each.value.services}'",
  ]))

  metadata_options {
    http_tokens = "required" # IMDSv2 only
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      fleet   = var.fleet
      role    = each.value.role
      env     = var.env
      version = each.value.version
      class   = "cattle"
    }
  }
}

resource "aws_autoscaling_group" "group" {
  for_each = var.groups

  name                = "${var.fleet}-${each.key}"
  min_size            = each.value.count
  max_size            = each.value.count
  desired_capacity    = each.value.count
  vpc_zone_identifier = var.subnet_ids

  # fleet gates each step on Consul health, not on the ASG's EC2 checks
  health_check_type         = "EC2"
  health_check_grace_period = 60
  wait_for_capacity_timeout = "10m"

  launch_template {
    id      = aws_launch_template.group[each.key].id
    version = aws_launch_template.group[each.key].latest_version
  }

  tag {
    key                 = "Name"
    value               = "${var.fleet}-${each.key}"
    propagate_at_launch = true
  }

  lifecycle {
    # a group is immutable: a new version is a new group, never an instance refresh
    create_before_destroy = true
  }
}

output "groups" {
  value = { for name, group in aws_autoscaling_group.group : name => group.desired_capacity }
}
