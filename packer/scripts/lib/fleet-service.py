#!/usr/bin/env python3
"""A stand-in for a role's real daemon: listens on a port so Consul checks have something real.

fleet-service http PORT NAME  serves GET /-/health (200) and GET / (the node's identity)
fleet-service tcp PORT NAME   accepts TCP connections and answers one line
"""

import http.server
import json
import os
import socketserver
import sys


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({
            "service": NAME,
            "role": os.environ.get("FLEET_ROLE", ""),
            "version": os.environ.get("FLEET_VERSION", ""),
            "path": self.path,
        }).encode()
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
