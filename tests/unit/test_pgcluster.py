"""The rehearsal's PostgreSQL tools (fleet/adapters/pgcluster.py): the argv that keeps a copy
apart, and the lock sampler's lines read strictly. Pure: nothing runs."""

from __future__ import annotations

from pathlib import Path

from fleet.adapters import pgcluster


def test_the_throwaway_instance_is_kept_apart() -> None:
    argv = pgcluster.instance_argv("sha256:abc", "f-rehearse-web", "f-rehearse-web",
                                   "f-rehearse-web", {"fleet.throwaway": "1"})
    assert argv[argv.index("--network") + 1] == "f-rehearse-web", "its own network only"
    assert argv[argv.index("--entrypoint") + 1] == "sh", "never the image's fleet-init (no agent)"
    script = argv[-1]
    assert "host all all samenet trust" in script and "hba_file=/tmp/hba.conf" in script, \
        "trust on its own network, so no password of the environment is read"
    assert "--label=fleet.throwaway=1" in argv and argv[argv.index("--shm-size") + 1] == "512m"
    assert "FLEET_CONSUL_JOIN" not in " ".join(argv), "never told where Consul is"


def test_the_copy_is_unpacked_without_a_network() -> None:
    argv = pgcluster.restore_argv("sha256:abc", "vol", Path("/x/base.tar"))
    assert argv[argv.index("--network") + 1] == "none"
    assert "--volume=/x/base.tar:/snapshot/base.tar:ro" in argv, "the archive read-only"
    assert f"-C {pgcluster.CLUSTER}" in argv[-1]


def test_lock_samples_are_read_strictly() -> None:
    text = ("1764680000.25\tAccessExclusiveLock\tt\tusers\n"
            "1764680000.30\tAccessExclusiveLock\tf\tusers\n"
            "garbage line\n"
            "1764680000.35\tShareLock\tt\n"          # cut by the sampler's stop
            "not-a-time\tShareLock\tt\tevents\n")
    assert pgcluster.parse_locks(text) == [
        pgcluster.LockSample(1764680000.25, "AccessExclusiveLock", True, "users"),
        pgcluster.LockSample(1764680000.30, "AccessExclusiveLock", False, "users")]


def test_the_sampler_stops_by_a_file_and_names_itself() -> None:
    argv = pgcluster.sampler_argv("c", "gitlab")
    assert argv[:5] == ["docker", "exec", "--detach", "--user", "postgres"]
    assert pgcluster.STOP_FILE in argv[-1] and f"PGAPPNAME={pgcluster.SAMPLER}" in argv[-1]
    assert f"application_name <> '{pgcluster.SAMPLER}'" in pgcluster.LOCKS, \
        "it never counts its own locks"
