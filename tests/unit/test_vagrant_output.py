"""The Vagrant adapter's parsing, on real output of the project's Vagrantfile (golden files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.adapters import vagrant

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "vagrant"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


@pytest.mark.parametrize(("name", "state"), [
    ("status-running.txt", vagrant.State.RUNNING),
    ("status-stopped.txt", vagrant.State.STOPPED),
    ("status-notcreated.txt", vagrant.State.NOT_CREATED),
])
def test_status_names_each_machine_and_its_state(name: str, state: vagrant.State) -> None:
    assert vagrant.parse_status(golden(name)) == (vagrant.Machine("web", "docker", state),)


def test_status_refuses_a_state_it_does_not_know() -> None:
    text = "1795610202,web,provider-name,docker\n1795610202,web,state,saved\n"
    with pytest.raises(vagrant.VagrantOutputError, match="unknown state 'saved'"):
        vagrant.parse_status(text)


def test_status_refuses_lines_outside_the_format() -> None:
    with pytest.raises(vagrant.VagrantOutputError, match="outside its machine-readable format"):
        vagrant.parse_status(golden("status-running.txt") + "Traceback (most recent call last):\n")


def test_status_needs_provider_and_state_for_every_machine() -> None:
    with pytest.raises(vagrant.VagrantOutputError, match="without its provider or state"):
        vagrant.parse_status("1795610202,web,provider-name,docker\n")


def test_a_failed_up_says_why_in_one_line() -> None:
    message = vagrant.error_message(golden("up-no-image.txt"))
    assert message.startswith("A Docker command executed by Vagrant didn't complete successfully!")
    assert "No such image: sha256:0000000000000000" in message
    assert "\n" not in message


def test_successful_runs_carry_no_error() -> None:
    for name in ("up-ok.txt", "destroy.txt", "status-running.txt"):
        assert vagrant.error_message(golden(name)) == ""
        assert not vagrant.container_vanished(golden(name))


def test_a_container_vanishing_mid_up_is_worth_another_try() -> None:
    assert vagrant.container_vanished(golden("up-container-vanished.txt"))
    assert not vagrant.container_vanished(golden("up-no-image.txt"))


def test_ssh_config() -> None:
    assert vagrant.parse_ssh_config(golden("ssh-config.txt")) == {"web": vagrant.SSHConfig(
        "127.0.0.1", 57701, "root", Path("/work/main/.fleet/vagrant/id_ed25519"))}


def test_ssh_config_is_parsed_strictly() -> None:
    with pytest.raises(vagrant.VagrantOutputError, match="Port"):
        vagrant.parse_ssh_config("Host web\n  HostName 127.0.0.1\n  User root\n")
    with pytest.raises(vagrant.VagrantOutputError, match="unexpected line"):
        vagrant.parse_ssh_config("  HostName 127.0.0.1\n")


def test_argv_never_provisions_and_is_machine_readable() -> None:
    assert vagrant.up_argv(["web"]) == ["vagrant", "up", "--provider", "docker", "--no-provision",
                                        "--machine-readable", "web"]
    assert vagrant.destroy_argv(["web"]) == ["vagrant", "destroy", "--force",
                                             "--machine-readable", "web"]


def test_project_environment_points_vagrant_at_its_files(tmp_path: Path) -> None:
    env = vagrant.Project(tmp_path, tmp_path / "dot", {"FLEET_FILE": "f"}).environ()
    assert env == {"FLEET_FILE": "f", "VAGRANT_CWD": str(tmp_path),
                   "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
                   "VAGRANT_DEFAULT_PROVIDER": "docker"}
