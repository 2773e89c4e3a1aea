#!/usr/bin/env python3
"""A stand-in for a role's real daemon: listens on a port so Consul checks have something real.

fleet-service http PORT NAME  serves GET /-/health (200) and GET / (the node's identity)
fleet-service tcp PORT NAME   accepts TCP connections and answers one line

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
"""

import http.server
import json
import os
import socketserver
import subprocess
import sys

DATABASE_ENV = "/etc/fleet/database.env"
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


def database_settings() -> dict[str, str] | None:
    try:
        with open(DATABASE_ENV) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


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
        db = database_settings() if self.path == "/" else None
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


class Hello(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(f"{NAME} ready\n".encode())


if __name__ == "__main__":
    KIND, PORT, NAME = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socketserver.TCPServer.allow_reuse_address = True
    server_class = http.server.ThreadingHTTPServer if KIND == "http" else socketserver.ThreadingTCPServer
    handler = Health if KIND == "http" else Hello
    with server_class(("0.0.0.0", PORT), handler) as server:
        server.serve_forever()
