"""What is checked of a bake without building it: a chef-solo role's inputs (run_list and
recipe syntax; Chef Infra Client cannot run here) and the aws template, rendered with a role's
inputs and `packer validate`d (an AMI is built in a real account)."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.adapters import chef, packer
from fleet.errors import FleetError
from fleet.model.definition import Role, Target
from fleet.services.bakeinputs import LIB_DIR, cookbooks, missing_files, script_environment, template_for
from fleet.services.context import Context

AWS_DEFAULTS = {"source_ami_owner": "136693071363", "source_ami_name": "debian-12-amd64-*",
                "ssh_username": "admin"}


def check_chef(ctx: Context, role: Role) -> None:
    """What can be verified of a chef-solo role without Chef: run_list and recipe syntax."""
    missing = [msg for path, msg in missing_files(ctx.fleet, ctx.root)
               if path.startswith(f"roles.{role.name}.")]
    if missing:
        raise FleetError(f"{role.name}: {missing[0]}", "add the recipe or fix the run_list")
    for book in cookbooks(ctx, role):
        for recipe in sorted(book.rglob("*.rb")):
            error = chef.syntax_error(recipe)
            if error is not None:
                raise FleetError(f"{role.name}: {recipe.relative_to(ctx.root)} does not parse: "
                                 f"{error}", "fix the recipe (ruby -c must pass)")


def write_chef_role(ctx: Context, role: Role) -> Path:
    """A Chef role file fleet-ROLE.json with the run_list and attributes; returns its folder."""
    folder = ctx.state_dir / "bake" / "chef-roles"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"fleet-{role.name}.json").write_text(json.dumps({
        "name": f"fleet-{role.name}", "json_class": "Chef::Role", "chef_type": "role",
        "default_attributes": dict(role.provisioner.attributes),
        "run_list": list(role.provisioner.run_list),
    }, indent=2))
    return folder


def validate_aws(ctx: Context, aws: Target, role: Role, version: str, digest: str) -> str:
    """Render the aws template for a role and `packer validate` it; return the template's name."""
    template = template_for(ctx, aws, role)
    variables: dict[str, packer.VarValue] = {
        "role": role.name, "digest": digest, "version": version,
        **{k: aws.settings.get(k, AWS_DEFAULTS.get(k, "")) for k in  # documented defaults
           ("region", "instance_type", "source_ami_owner", "source_ami_name", "ssh_username")},
    }
    if role.provisioner.kind == "chef-solo":
        variables["cookbooks_dir"] = str(ctx.root / "cookbooks")
        variables["roles_dir"] = str(write_chef_role(ctx, role))
    else:
        variables["lib_dir"] = str(ctx.root / LIB_DIR)
        variables["scripts"] = [str(ctx.root / s) for s in role.provisioner.scripts]
        variables["environment"] = script_environment(role)
    packer.validate(template, variables, cwd=ctx.root)
    return template.name
