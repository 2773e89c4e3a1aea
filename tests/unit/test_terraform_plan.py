"""The Terraform adapter's plan parsing, on real `terraform show -json` output (golden files of
terraform/lab/machines, made by Terraform 1.11 against the lab's consul backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.adapters import terraform
from fleet.adapters.terraform import Change

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "terraform"
PET = 'terraform_data.pet["postgres-01"]'
DATA = 'terraform_data.pet_data["postgres-01"]'
BASTION = 'terraform_data.snowflake["bastion-01"]'


def parsed(name: str) -> terraform.Plan:
    return terraform.parse_plan((GOLDEN / f"{name}.json").read_text())


def actions(plan: terraform.Plan) -> dict[str, Change]:
    return {c.address: c.change for c in plan.changes}


def test_a_fresh_state_plans_every_instance_created() -> None:
    plan = parsed("plan-create")
    assert actions(plan) == {PET: Change.CREATE, DATA: Change.CREATE, BASTION: Change.CREATE}
    pet = next(c for c in plan.changes if c.address == PET)
    assert (pet.type, pet.name, pet.key, pet.before) == ("terraform_data", "pet", "postgres-01",
                                                         None)
    assert pet.after["input"]["settings"] == '{"max_connections": 100}'
    assert plan.prior == {} and plan.applyable and plan.terraform_version.startswith("1.")


def test_an_applied_state_plans_nothing_and_shows_its_prior_values() -> None:
    plan = parsed("plan-nothing")
    assert set(actions(plan).values()) == {Change.NOOP} and plan.actionable == ()
    assert plan.prior[PET]["input"]["volume"] == "golden-postgres-01-data"


def test_a_settings_change_is_an_update_in_place() -> None:
    plan = parsed("plan-update-in-place")
    assert [(c.address, c.change) for c in plan.actionable] == [(PET, Change.UPDATE)]
    change = plan.actionable[0]
    assert change.before["input"]["settings"] != change.after["input"]["settings"]


def test_a_requested_replace_and_a_removed_key_say_why() -> None:
    replaced = parsed("plan-replace-requested").actionable
    assert [(c.address, c.change, c.reason) for c in replaced] == [
        (PET, Change.REPLACE, "replace_by_request")]
    removed = parsed("plan-destroy-snowflake").actionable
    assert [(c.address, c.change, c.reason) for c in removed] == [
        (BASTION, Change.DELETE, "delete_because_each_key")]


def test_prevent_destroy_names_the_resource() -> None:
    stderr = (GOLDEN / "plan-prevent-destroy.stderr").read_text()
    assert terraform.prevented(stderr) == [DATA]
    assert terraform.prevented("Error: something else") == []


@pytest.mark.parametrize("key", ["format_version", "terraform_version", "applyable"])
def test_a_missing_key_is_an_error(key: str) -> None:
    data = json.loads((GOLDEN / "plan-create.json").read_text())
    del data[key]
    with pytest.raises(terraform.PlanFormatError):
        terraform.parse_plan(json.dumps(data))


def test_a_change_without_actions_or_with_unknown_ones_is_an_error() -> None:
    data = json.loads((GOLDEN / "plan-create.json").read_text())
    del data["resource_changes"][0]["change"]["actions"]
    with pytest.raises(terraform.PlanFormatError):
        terraform.parse_plan(json.dumps(data))
    data = json.loads((GOLDEN / "plan-create.json").read_text())
    data["resource_changes"][0]["change"]["actions"] = ["explode"]
    with pytest.raises(terraform.PlanFormatError, match="explode"):
        terraform.parse_plan(json.dumps(data))


def test_a_newer_format_is_refused() -> None:
    data = json.loads((GOLDEN / "plan-nothing.json").read_text())
    data["format_version"] = "2.0"
    with pytest.raises(terraform.PlanFormatError, match=r"not 1\.x"):
        terraform.parse_plan(json.dumps(data))
