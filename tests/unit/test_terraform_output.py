"""Terraform's human diagnostics become one line each (golden: a real failed apply's stderr)."""

from __future__ import annotations

from fleet.adapters.terraform import diagnostics
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "terraform"


def test_a_failed_local_exec_names_the_resource_and_the_commands_own_words() -> None:
    line = diagnostics((GOLDEN / "apply-local-exec-failed.txt").read_text())
    assert "\n" not in line
    assert line.startswith("Error: local-exec provisioner error (terraform_data.x) exit status 125")
    assert "No such image: sha256:0000" in line
    assert "main.tf line 2" not in line  # the source snippet is left out


def test_box_drawn_diagnostics_and_several_errors() -> None:
    stderr = ("╷\n│ Error: Error acquiring the state lock\n│ \n│ Lock Info:\n│   ID: abc\n╵\n"
              "╷\n│ Error: Missing required argument\n│ \n│   on main.tf line 3:\n"
              "│    3: x = 1\n│ \n│ The argument \"y\" is required.\n╵\n")
    assert diagnostics(stderr).splitlines() == [
        "Error: Error acquiring the state lock Lock Info:",
        'Error: Missing required argument The argument "y" is required.']


def test_no_diagnostic_keeps_the_raw_text() -> None:
    assert diagnostics("segfault\n") == "segfault\n"


# Terraform 1.11's stderr when Consul's leader had just died (the lab's three servers): a
# follower still forwarding to it answered 500 for a moment.
FOLLOWER_500 = ("Unexpected response code: 500 (rpc error getting client: failed to get conn: "
                "dial tcp 172.30.9.1:0->172.30.9.1:8310: connect: connection refused)")


def test_a_state_lock_lost_to_an_election_is_told_apart() -> None:
    from fleet.adapters.terraform import (
        cut_by_election,
        only_unlock_failed,
        unlocked_for_election,
    )

    not_taken = f"╷\n│ Error: Error acquiring the state lock\n│ \n│ Error message: {FOLLOWER_500}\n╵\n"
    not_released = (f"╷\n│ Error: Error releasing the state lock\n│ \n│ Error message: "
                    f"{FOLLOWER_500}\n│ \n│ Terraform acquires a lock when accessing your "
                    "state\n╵\n")
    held = "╷\n│ Error: Error acquiring the state lock\n│ \n│ Lock Info:\n│   ID: 1234\n╵\n"
    failed = f"│ Error: local-exec provisioner error\n{not_released}"
    assert unlocked_for_election(not_taken) and not only_unlock_failed(not_taken)
    assert only_unlock_failed(not_released) and not unlocked_for_election(not_released)
    assert not unlocked_for_election(held) and not only_unlock_failed(held), \
        "a lock another run holds is waited for, never run through"
    assert not only_unlock_failed(failed), "an apply that failed stays failed"
    server_gone = not_released.replace(FOLLOWER_500, "Unexpected response code: 500 (rpc error "
                                       "making call: EOF)")
    assert only_unlock_failed(server_gone), "a release lost for any reason: the work is done"
    cut = ("╷\n│ Error: Failed to save state\n│ \n│ Error saving state: " + FOLLOWER_500 +
           "\n╵\n╷\n│ Error: local-exec provisioner error\n│ \n│ Error running command 'set -e"
           "\n│ fleet: error: node n-2 could not log in: fleet-node: the consul agent refused "
           "its reload: 403 Forbidden\n╵\n" + not_released)
    assert cut_by_election(cut) and not only_unlock_failed(cut), \
        "a run cut short by an election is made again, not counted done"
    assert cut_by_election(not_taken) and not cut_by_election(held)
    assert not cut_by_election("│ Error: local-exec provisioner error\n"), \
        "a run that failed by itself is not made again"
