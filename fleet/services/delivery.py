"""Handing new lab nodes their credentials while Terraform creates them: the delivery desk.

A lab module's create provisioner hands each node its Consul token and Vault login by running
a command with NODE ROLE ENV after it (`deliver` in terraform/lab/*). The whole command,
`fleet secrets deliver`, is a Python interpreter importing fleet per node: on a 2-core host,
five nodes of a batch cost ~2 s of CPU that the batch's boot waits for.

So while fleet runs an apply it keeps a desk open: a Unix socket under .fleet/run (0600, in a
0700 directory), served by threads of the fleet process, which already has everything
imported and its clients at hand. The provisioner's command is then deliver_client.py, a
stdlib-only script that sends the desk NODE ROLE ENV and prints its answer. Where no desk
answers (fleet was killed mid-apply and Terraform, which outlives it, goes on; or a saved
plan applied later), the client runs the whole command instead, so a node is never created
without its credentials. The delivery itself is the same either way
(fleet.services.credentials.deliver).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shlex
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from fleet.errors import FleetError
from fleet.services.context import Context

CLIENT = Path(__file__).with_name("deliver_client.py")
SOCKET_PATH_MAX = 100  # bytes: a Unix socket's path is limited to 107 on Linux
_desks = itertools.count(1)  # desks this process opened: each its own socket


def deliver_argv(ctx: Context) -> list[str]:
    """The whole command that hands a node just created its credentials, with NODE ROLE ENV
    after it: `fleet secrets deliver`."""
    return [sys.executable, "-m", "fleet", "-f", str(ctx.file), "secrets", "deliver"]


def deliver_command(ctx: Context) -> str:
    """deliver_argv as the shell command line a lab module's create provisioner runs."""
    return shlex.join(deliver_argv(ctx))


def answer(ctx: Context, request: str) -> dict[str, str | bool]:
    """What the desk answers to one request line, NODE ROLE ENV: what the delivery said, or
    the one line of why it failed."""
    from fleet.services import credentials  # Vault's client: only where a node is made

    parts = request.split()
    if len(parts) != 3:
        return {"ok": False, "error": f"a delivery takes NODE ROLE ENV, not {request!r}"}
    try:
        return {"ok": True, "said": credentials.deliver(ctx, *parts)}
    except FleetError as exc:
        return {"ok": False, "error": exc.line()}
    except Exception as exc:  # the node's provisioner says why: never a hang
        return {"ok": False, "error": f"delivery to {parts[0]} failed: {exc!r}"}


class _Desk(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, ctx: Context) -> None:
        self.ctx = ctx
        super().__init__(path, _Request)


class _Request(socketserver.StreamRequestHandler):
    server: _Desk

    def handle(self) -> None:
        line = self.rfile.readline(4096).decode(errors="replace").strip()
        self.wfile.write(json.dumps(answer(self.server.ctx, line)).encode() + b"\n")


@contextlib.contextmanager
def desk(ctx: Context) -> Iterator[str]:
    """Keep a delivery desk open for as long as the block runs; yields the command line for
    the module's `deliver` variable (the whole command where no socket can be made)."""
    whole = deliver_argv(ctx)
    run = ctx.state_dir / "run"
    path = run / f"deliver-{os.getpid()}-{next(_desks)}.sock"
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        yield shlex.join(whole)
        return
    run.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a killed process's, of the same pid
    old = os.umask(0o177)  # the socket is made 0600: only this user may ask for a delivery
    try:
        server = _Desk(str(path), ctx)
    finally:
        os.umask(old)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    try:
        yield shlex.join([sys.executable, "-I", "-S", str(CLIENT), str(path), *whole])
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)
