"""The create provisioner's side of a delivery (see fleet/services/delivery.py).

Run as a script, never imported, with the standard library only (`python -I -S`: no site,
no fleet, a start-up of a few milliseconds):

    deliver_client.py SOCKET WHOLE-COMMAND... NODE ROLE ENV

It asks the fleet process's desk at SOCKET to deliver to NODE and prints what it says
(exit 0), or its error line (exit 1). Where no desk answers at all, it runs the whole command
(`fleet secrets deliver`) with NODE ROLE ENV instead.
"""

import json
import os
import socket
import sys

TIMEOUT = 300.0  # seconds a delivery may take (Vault or Consul waiting out an election)


def whole_command(whole: list[str], request: list[str]) -> None:
    """No desk to answer: the whole command (`fleet secrets deliver`) delivers instead."""
    os.execvp(whole[0], [*whole, *request])


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print("usage: deliver_client.py SOCKET WHOLE-COMMAND... NODE ROLE ENV", file=sys.stderr)
        return 2
    path, whole, request = argv[0], argv[1:-3], argv[-3:]
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(TIMEOUT)
        conn.connect(path)
    except OSError:  # no fleet keeps the desk open
        whole_command(whole, request)
    try:
        with conn:
            conn.sendall((" ".join(request) + "\n").encode())
            reply = conn.makefile("rb").readline()
    except OSError as exc:
        print(f"fleet: error: the delivery to {request[0]} got no answer ({exc}): "
              "rerun the command", file=sys.stderr)
        return 1
    try:
        said = json.loads(reply)
    except ValueError:  # the fleet process went away mid-delivery: deliver afresh
        whole_command(whole, request)
    if said.get("ok"):
        print(said.get("said", ""))
        return 0
    print(f"fleet: error: {said.get('error', 'the delivery failed')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
