"""The secret scan: values anywhere, key and token formats in text files."""

from __future__ import annotations

import io
import tarfile

from fleet.model import secretscan

VALUE = b"correct-horse-battery-staple"
NEEDLES = {VALUE: "fleet/web/canary:db_password"}
KEY = (b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
       b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       b"-----END OPENSSH PRIVATE KEY-----\n")


def whats(data: bytes) -> list[str]:
    return [f.what for f in secretscan.scan("f", data, NEEDLES)]


def test_a_secret_value_is_found_in_any_file() -> None:
    assert whats(b"\0\1binary" + VALUE + b"\0") == ["the value of fleet/web/canary:db_password"]


def test_a_private_key_is_found_but_not_its_bare_header() -> None:
    assert whats(b"config\n" + KEY) == ["a private key"]
    assert whats(b'if grep -q "-----BEGIN RSA PRIVATE KEY-----" "$f"; then\n') == []
    assert whats(b"\0\0ELF" + KEY) == []  # binaries embed test vectors (gnutls)


def test_tokens_are_found_and_identifiers_are_not() -> None:
    assert whats(b"VAULT_TOKEN=s.4Xq7rT0pLm2Nv8Yz1Wb5Kc9d\n") == ["a Vault token"]
    assert whats(b"token: hvs.CAESIABcDeFgHiJkLmNoPqRsTu1VwXyZ\n") == ["a Vault token"]
    assert whats(b"x = os.ReadFromWithContextAndCancel()\n") == []


def test_short_values_are_not_scanned() -> None:
    assert secretscan.needles([("a", "short"), ("b", "long-enough-value")]) == {
        b"long-enough-value": "b"}


def test_tar_stream_scan_names_the_file() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("etc/ok", b"fine"), ("etc/gitlab/leaked", VALUE)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    found = list(secretscan.scan_tar(buffer, NEEDLES))
    assert [(f.where, f.what) for f in found] == [
        ("/etc/gitlab/leaked", "the value of fleet/web/canary:db_password")]
