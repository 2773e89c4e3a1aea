"""Secrets and credentials on the node: where delivery puts them, and nowhere else.

A verify (or Vagrant) node gets what `fleet secrets deliver` gives every new node: its own
Consul token, written 0600 root on the /run/fleet tmpfs. It gets no Vault secrets: its
environment (`verify`, `vagrant`) has no AppRole, so an image under test never holds a real
secret; the rendered-secret paths must therefore be absent. The scan is over every file.
"""

from __future__ import annotations

from typing import Any

TOKEN_FILE = "/run/fleet/consul/acl.json"  # where fleet-node login puts the node's token


def test_credentials_live_on_a_tmpfs(node: Any) -> None:
    kind = node.sh("stat -f -c %T /run/fleet")
    assert kind == "tmpfs", f"/run/fleet is on {kind}, not a tmpfs: credentials would reach a disk"
    node.expect("/run/fleet", "700", "directory")


def test_consul_token_delivered_readable_by_root_only(node: Any) -> None:
    node.expect(TOKEN_FILE, "600", "regular file")


def test_no_vault_secret_rendered_on_a_local_node(node: Any, secrets_dir: str, secret: str) -> None:
    path = f"{secrets_dir}/{secret}"
    found = node.stat(path)
    assert found is None, (f"{path} exists ({found}) on a local node, whose environment has no "
                           "AppRole: where did it come from?")


def test_no_secret_in_node_files(node: Any, secrets_dir: str,
                                 secret_needles: dict[bytes, str]) -> None:
    """No lab secret value, private key or Vault token in any file of the node, except the
    rendered secrets and the SSH host keys fleet-init made at boot."""
    from fleet.model import secretscan

    command = (f"tar --one-file-system --warning=no-file-changed -C / "
               f"--exclude=.{secrets_dir} --exclude='./etc/ssh/ssh_host_*_key' -cf - .")
    _, stdout, stderr = node.conn.client.exec_command(command, bufsize=1 << 20)
    findings = list(secretscan.scan_tar(stdout, secret_needles))
    code = stdout.channel.recv_exit_status()
    assert code in (0, 1), f"tar of the node exited {code}: {stderr.read().decode()[-300:]}"
    assert not findings, "; ".join(f"{f.where} holds {f.what}" for f in findings[:5])
