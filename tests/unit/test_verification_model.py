"""fleet verify's pure parts: the verdict, its record, the promotion gate, local nodes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.errors import ConfigError
from fleet.model.definition import parse
from fleet.model.image import current
from fleet.model.verification import (
    VERIFY_ENV,
    CheckResult,
    Outcome,
    Verification,
    VerificationError,
    container_env,
    local_node,
    verify_problems,
)
from fleet.services.verdicts import Verifications, read_verification
from tests.conftest import EXAMPLE
from tests.unit.test_catalog import MemoryKV
from tests.unit.test_image_model import record

GATED = EXAMPLE.read_text().replace('name = "canary"\n', 'name = "canary"\nrequire_verify = true\n')


def verdict(*outcomes: Outcome, artifact: str = "sha256:aaa") -> Verification:
    checks = tuple(CheckResult(f"check{i}", o, 0.1, "" if o is Outcome.PASSED else "why")
                   for i, o in enumerate(outcomes))
    return Verification("web", "v1", artifact, "gitlab-web-verify-v1-1234", checks,
                        "2026-01-01T00:00:00+00:00", "dev@host", 12.5)


def test_passed_means_some_check_ran_and_none_failed() -> None:
    assert verdict(Outcome.PASSED, Outcome.SKIPPED).passed
    assert not verdict(Outcome.PASSED, Outcome.FAILED).passed
    assert not verdict().passed
    assert verdict(Outcome.PASSED, Outcome.FAILED).summary() == (
        "failed (check1) 1/2 checks at 2026-01-01T00:00:00+00:00 (run 1)")
    assert verdict(Outcome.PASSED, Outcome.SKIPPED).summary().startswith("passed 1/1 checks")


def test_record_round_trips_and_is_read_strictly() -> None:
    original = verdict(Outcome.PASSED, Outcome.FAILED)
    assert Verification.from_json(original.to_json()) == original
    data = json.loads(original.to_json())
    del data["artifact"]
    with pytest.raises(VerificationError, match="artifact"):
        Verification.from_json(json.dumps(data))


def test_the_gate_asks_only_where_the_fleet_requires_it() -> None:
    image = record("v1", "aaa")
    example = parse(EXAMPLE.read_text())
    assert verify_problems(example, "canary", image, None) == []
    gated = parse(GATED)
    assert gated.environments[0].require_verify and not gated.environments[1].require_verify
    assert verify_problems(gated, "staging", image, None) == []
    assert verify_problems(gated, "canary", image, verdict(Outcome.PASSED)) == []


def test_the_gate_says_why_a_version_may_not_enter() -> None:
    gated = parse(GATED)
    image = record("v1", "aaa")
    never = verify_problems(gated, "canary", image, None)
    assert never == ["web:v1 has not been verified, and canary requires a passing verify: "
                     "run `fleet verify web --version v1`"]
    failed = verify_problems(gated, "canary", image, verdict(Outcome.FAILED))
    assert failed[0].startswith("web:v1 failed its latest verify (failed (check0)")
    other = verify_problems(gated, "canary", image, verdict(Outcome.PASSED, artifact="sha256:bbb"))
    assert other[0].startswith("the verify of web:v1 booted image bbb, not the catalog's aaa")


def test_local_environment_names_are_reserved() -> None:
    text = EXAMPLE.read_text().replace('name = "staging"', 'name = "verify"')
    text = text.replace("staging = ", "verify = ")
    with pytest.raises(ConfigError) as error:
        parse(text)
    assert any('"verify" is reserved' in p for p in error.value.problems)


def test_current_image_is_the_newest_not_revoked() -> None:
    old, new = record("v1", "a", at="2026-01-01"), record("v2", "b", at="2026-02-01")
    assert current([new, old]) == new
    assert current([old, replace(new, revoked=True)]) == old
    assert current([replace(old, revoked=True)]) is None


def test_a_verify_node_is_outside_every_environment() -> None:
    fleet = parse(EXAMPLE.read_text())
    node = local_node("gitlab", fleet.roles["web"], VERIFY_ENV, record("v1.2", "aaa"), 4711)
    assert node.name == "gitlab-web-verify-v1-2-4711" and node.image == "sha256:aaa"
    env = container_env(node, "172.30.7.1", "lab")
    services = json.loads(env["FLEET_CONSUL_SERVICES"])["services"]
    assert services[0]["meta"]["env"] == "verify" and "env:verify" in services[0]["tags"]
    assert env["FLEET_ENV"] == "verify" and env["FLEET_CONSUL_JOIN"] == "172.30.7.1"


def test_verdicts_are_numbered_and_written_with_check_and_set() -> None:
    kv = MemoryKV()
    store = Verifications(kv, "fleet/t")
    assert read_verification(kv, "fleet/t", "web", "v1") is None
    assert store.record(verdict(Outcome.FAILED)).run == 1
    second = store.record(verdict(Outcome.PASSED))
    assert second.run == 2 and second.passed
    assert read_verification(kv, "fleet/t", "web", "v1") == second
    assert list(kv.data) == ["fleet/t/verify/web/v1"]


def test_a_verdict_written_meanwhile_is_read_again_not_overwritten() -> None:
    class Racing(MemoryKV):
        """Another verify records its verdict just before our first write."""

        def put(self, key: str, value: bytes | str, *, cas: int) -> bool:
            if not self.data:
                super().put(key, verdict(Outcome.PASSED).to_json(), cas=0)
            return super().put(key, value, cas=cas)

    recorded = Verifications(Racing(), "fleet/t").record(verdict(Outcome.FAILED))
    assert recorded.run == 2 and not recorded.passed
