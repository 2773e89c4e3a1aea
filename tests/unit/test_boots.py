"""The reboot watcher's reading of `docker events` (golden: real output of docker 28) and its
decision of what counts as a reboot."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.adapters import docker
from fleet.workflows.lab.boots import FIRST_START, is_reboot

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "docker" / "events-start-restart.jsonl"


def events() -> list[docker.Event]:
    return [docker.parse_event(line) for line in GOLDEN.read_text().splitlines() if line]


def test_events_are_read_strictly() -> None:
    first, again, restart = events()
    assert (first.action, again.action, restart.action) == ("start", "start", "restart")
    assert first.container == "fleet-probe-ev"
    assert first.labels["fleet.role"] == "x" and first.labels["fleet.probe"] == "1"
    assert "name" not in first.labels and "image" not in first.labels


def test_an_event_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a container event"):
        docker.parse_event('{"Type": "network", "Action": "connect", "Actor": {"Attributes": {}}}')
    with pytest.raises(KeyError):
        docker.parse_event('{"Type": "container", "Action": "start", "Actor": {}}')


def test_the_argv_filters_by_label_and_action() -> None:
    argv = docker.events_argv("fleet.lab=1", ("start", "restart"))
    assert argv[:4] == ["docker", "events", "--format", "{{json .}}"]
    assert "label=fleet.lab=1" in argv and "event=restart" in argv and "type=container" in argv


@pytest.mark.parametrize(("action", "since", "reboot"), [
    ("start", 0.7, False),                 # docker run: the creator delivers
    ("start", FIRST_START + 1, True),      # dockerd or a restart policy brought it back
    ("restart", 0.7, True),                # docker restart, however young the node
    ("start", None, False),                # gone before it could be looked at
])
def test_what_counts_as_a_reboot(action: str, since: float | None, reboot: bool) -> None:
    event = docker.Event(action, "gitlab-web-canary-v1-0", {"fleet.role": "web"})
    assert is_reboot(event, since) is reboot
