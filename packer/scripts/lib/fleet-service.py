#!/usr/bin/env python3
"""A stand-in for a role's real daemon: listens on a port so Consul checks have something real.

fleet-service http PORT NAME  serves GET /-/health (200) and GET / (the node's identity)
fleet-service tcp PORT NAME   accepts TCP connections and answers one line
fleet-service place KEY       prints the storage a new repository KEY goes to (see below)

A role that uses the postgres pet's database (its image has /etc/fleet/database.env, written by
common.sh's uses_database) also says, in its answer to GET /, the schema version it sees:
"schema_version" is the highest id in the table schema_migrations ("" while the table does not
exist or is empty), or null with "database_error" saying why when it cannot ask. The database
is the first passing postgres instance that the node's Consul watch rendered into
/etc/fleet/upstreams.json (of the environment whose pets the node uses: production's for a
canary node, see fleet/model/nodes.py upstreams()); the password is the node's Vault secret,
rendered by fleet-node to /run/fleet/secrets/db_password; psql connects (PGPASSWORD in its
environment only). GET /-/health never asks the database: a database down must not take every
node out of service.

A front end that places new work on storages (the git role: its image has
/etc/fleet/storage.env, written by common.sh's places_repositories) sends each new repository
to a storage by weight, as GitLab's repository storage weights do: the weights are the ones the
node's Consul watch rendered into /etc/fleet/weights.json (each passing instance's
Weights.Passing, 0 for one tagged weight:0: a move's held-back target, or its source once the
target takes all). The choice is a hash of the repository's name over the weights' cumulative
ranges, so it is the same on every front end at the same weights, and a storage of weight 0
never gets one. Its TCP service answers `place KEY` (one line after its greeting) with
{"repository": KEY, "storage": "ADDRESS:PORT"}, or "error" when no storage takes new work.
"""

import hashlib
import http.server
import json
import os
import socketserver
import subprocess
import sys

DATABASE_ENV = "/etc/fleet/database.env"
STORAGE_ENV = "/etc/fleet/storage.env"
PSQL = "/usr/lib/postgresql/15/bin/psql"
# The highest id: ids are numbers or timestamps, so the longest, then the greatest.
SCHEMA_VERSION = r"""SELECT to_regclass('schema_migrations') IS NOT NULL AS has_table \gset
\if :has_table
SELECT 'v:' || coalesce((SELECT id::text FROM schema_migrations
                         ORDER BY length(id::text) DESC, id::text DESC LIMIT 1), '');
\else
SELECT 'v:';
\endif
"""


def settings(path: str) -> dict[str, str] | None:
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def place(key: str, storage: dict[str, str]) -> str | None:
    """The storage (ADDRESS:PORT) a new repository named key goes to; None when none takes
    new work."""
    service = storage.get("FLEET_STORAGE_SERVICE", "gitaly")
    try:
        with open(storage["FLEET_STORAGE_WEIGHTS_FILE"]) as handle:
            weights = json.load(handle).get(service) or {}
    except (OSError, ValueError):
        return None
    serving = sorted((a, int(w)) for a, w in weights.items() if int(w) > 0)
    total = sum(w for _, w in serving)
    if not total:
        return None
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
    for address, weight in serving:
        if point < weight:
            return address
        point -= weight
    return None  # not reached: point < total


def schema_version(db: dict[str, str]) -> dict[str, object]:
    """{"schema_version": ...} or {"schema_version": None, "database_error": why}."""
    def failed(why: str) -> dict[str, object]:
        return {"schema_version": None, "database_error": why}

    service, upstreams = db.get("FLEET_DB_SERVICE", "postgres"), db["FLEET_DB_UPSTREAMS_FILE"]
    try:
        with open(upstreams) as handle:
            addresses = json.load(handle).get(service) or []
    except (OSError, ValueError):
        addresses = []
    if not addresses:
        return failed(f"no passing {service} instance in Consul for this node ({upstreams})")
    try:
        with open(db["FLEET_DB_PASSWORD_FILE"]) as handle:
            password = handle.read()
    except OSError:
        return failed(f"no db_password rendered from Vault ({db['FLEET_DB_PASSWORD_FILE']})")
    errors = []
    for address in addresses:
        host, port = address.rsplit(":", 1)
        env = {**os.environ, "PGHOST": host, "PGPORT": port, "PGDATABASE": db["FLEET_DB_NAME"],
               "PGUSER": db["FLEET_DB_USER"], "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "3",
               "PGAPPNAME": f"fleet-service {NAME}"}
        try:
            done = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                                  input=SCHEMA_VERSION, env=env, capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{address}: {exc}")
            continue
        found = [line for line in done.stdout.splitlines() if line.startswith("v:")]
        if done.returncode == 0 and found:
            return {"schema_version": found[-1][2:], "database": address}
        said = (done.stderr.strip().splitlines() or ["psql failed"])[0]
        errors.append(f"{address}: {said.removeprefix('psql: error: ')}")
    return failed("; ".join(errors))


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        answer: dict[str, object] = {
            "service": NAME,
            "role": os.environ.get("FLEET_ROLE", ""),
            "version": os.environ.get("FLEET_VERSION", ""),
            "path": self.path,
        }
        db = settings(DATABASE_ENV) if self.path == "/" else None
        if db is not None:
            answer.update(schema_version(db))
        body = json.dumps(answer).encode()
        self.send_response(200 if self.path in ("/", "/-/health") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # Consul checks every few seconds; their lines would drown the log


def placed(key: str, storage: dict[str, str]) -> dict[str, str]:
    address = place(key, storage)
    if address is None:
        service = storage.get("FLEET_STORAGE_SERVICE", "gitaly")
        return {"repository": key, "error": f"no passing {service} instance takes new work"}
    return {"repository": key, "storage": address}


class Hello(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(f"{NAME} ready\n".encode())
        storage = settings(STORAGE_ENV)
        if storage is None:
            return
        self.connection.settimeout(10)   # a health check connects and goes: readline sees EOF
        try:
            verb, _, key = self.rfile.readline(4096).decode().strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            return
        if verb == "place" and key:
            self.wfile.write((json.dumps(placed(key, storage)) + "\n").encode())


if __name__ == "__main__":
    if sys.argv[1:2] == ["place"] and len(sys.argv) == 3:
        answer = placed(sys.argv[2], settings(STORAGE_ENV) or {})
        print(answer.get("storage") or answer["error"], file=sys.stdout if "storage" in answer
              else sys.stderr)
        sys.exit(0 if "storage" in answer else 1)
    KIND, PORT, NAME = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socketserver.TCPServer.allow_reuse_address = True
    server_class = http.server.ThreadingHTTPServer if KIND == "http" else socketserver.ThreadingTCPServer
    handler = Health if KIND == "http" else Hello
    with server_class(("0.0.0.0", PORT), handler) as server:
        server.serve_forever()
