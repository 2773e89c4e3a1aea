"""Telling a dead lock holder from a live one: only a process of this very host that is gone."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

from fleet.services.lock import Holder, this_host


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid is free
    return proc.pid


def test_a_holder_round_trips_through_the_lock_value() -> None:
    me = Holder.me("s-1")
    assert Holder.read(me.to_json().encode()) == me
    assert me.host == this_host() and me.pid == os.getpid() and me.started > 0
    assert Holder.read(b"") is None and Holder.read(b"not json") is None


def test_only_a_gone_process_of_this_host_is_a_dead_holder() -> None:
    me = Holder.me("s-1")
    assert not me.gone(), "a live process holds it"
    assert replace(me, pid=dead_pid()).gone(), "no such process on this host"
    assert replace(me, started=me.started + 1).gone(), "its pid now runs another process"
    assert not replace(me, pid=dead_pid(), host="elsewhere " + me.host).gone(), \
        "a holder on another host, in another pid namespace or boot is never judged"
    assert not replace(me, pid=dead_pid(), session="").gone(), "no session to end"
    old = {"who": "root@vm", "pid": dead_pid(), "since": "2026-01-01T00:00:00+00:00"}
    older = Holder.read(json.dumps(old).encode())
    assert older is not None and not older.gone(), "a value without host: it may live"
    assert "root@vm (pid" in older.line()


def test_a_zombie_holder_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        zombie = replace(Holder.me("s-1"), pid=proc.pid)
        with open(f"/proc/{proc.pid}/stat") as stat:
            started = int(stat.read().rsplit(")", 1)[1].split()[19])
        assert replace(zombie, started=started).gone()
    finally:
        proc.wait()
