"""The secret scan: values anywhere, as they are and encoded; key and token formats in text
files; a finding never holds a value."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.model import secretscan

ROOT = Path(__file__).resolve().parents[2]
VALUE = b"correct-horse-battery-staple"
NAME = "fleet/web/canary:db_password"
# a value whose base64 has + and / (so its URL-safe form differs) and whose URL-encoding differs
ODD = b"pw>?>?>?>?-9Zt~~ &/"
ODD_NAME = "fleet/api/canary:token"
NEEDLES = {VALUE: NAME, ODD: ODD_NAME}
KEY = (b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
       b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       b"-----END OPENSSH PRIVATE KEY-----\n")
# made up, and split so that no scanner flags this file
CONSUL = "3f0c9a52-7d1e-4b8a-9c61-0e5fb2d47a13"
AWS_ID = "AKIA" + "Z3Q7RT0PLM2NV8YK"
AWS_SECRET = "q8Vd2LmZ0pT/Xr5nYc7Kb+Wf3Hs9Ja1Ug6Oe4Ni" + "R"


def whats(data: bytes, values: dict[bytes, str] = NEEDLES) -> list[str]:
    return [f.what for f in secretscan.scan("f", data, values)]


def text(line: str) -> list[str]:
    return whats(line.encode())


def never_shown(findings: list[secretscan.Finding]) -> None:
    shown = repr(findings).encode()
    for value in NEEDLES:
        assert value not in shown
        for form in secretscan.encodings(value):
            assert form not in shown


def test_a_secret_value_is_found_in_any_file() -> None:
    assert whats(b"\0\1binary" + VALUE + b"\0") == [f"the value of {NAME}"]


# ---- encoded values -------------------------------------------------------------------------

AROUND = {  # what surrounds an encoded value: a script, a JSON file, a binary
    "script": (b"#!/bin/sh\necho ", b" > /etc/app/creds\n"),
    "json": (b'{"auth": "', b'", "user": "git"}\n'),
    "binary": (b"\x7fELF\0\0\1\2" + bytes(range(256)), b"\0\xff\xfe" + bytes(range(255, -1, -1))),
}
BASE64: dict[str, Callable[[bytes], bytes]] = {
    "standard": base64.b64encode, "URL-safe": base64.urlsafe_b64encode}


@pytest.mark.parametrize("around", sorted(AROUND))
@pytest.mark.parametrize("alphabet", sorted(BASE64))
@pytest.mark.parametrize("offset", [0, 1, 2])
@pytest.mark.parametrize(("value", "name"), NEEDLES.items())
def test_a_value_in_a_base64_stream_is_found_at_each_alignment(
        value: bytes, name: str, offset: int, alphabet: str, around: str) -> None:
    """The value starts 0, 1 or 2 bytes into a 3-byte group, after and before other bytes
    (`echo "git:$password" | base64`)."""
    before, after = AROUND[around]
    for tail in (b"", b"\n", b":tail-bytes"):  # the value ends the stream, or does not
        stream = BASE64[alphabet](b"git:"[:offset] + value + tail)
        found = secretscan.scan("/etc/app/creds", before + stream + after, NEEDLES)
        assert [f.what for f in found] == [f"the value of {name} (base64)"], (stream, tail)
        never_shown(found)


def test_each_alignment_and_alphabet_is_its_own_needle() -> None:
    forms = [f for f, n in secretscan.encodings(ODD).items() if n == "base64"]
    assert len(forms) == 6  # 3 alignments x 2 alphabets: ODD's base64 has + and /
    assert {f for f, n in secretscan.encodings(VALUE).items() if n == "base64"} == {
        base64.b64encode(VALUE)[:37], base64.b64encode(b"x" + VALUE)[2:38],
        base64.b64encode(b"xy" + VALUE)[3:40]}  # no + or /: one alphabet


@pytest.mark.parametrize("around", sorted(AROUND))
@pytest.mark.parametrize(("value", "name"), NEEDLES.items())
def test_a_value_in_hex_is_found_in_either_case(value: bytes, name: str, around: str) -> None:
    before, after = AROUND[around]
    for hexed in (value.hex(), value.hex().upper()):
        found = secretscan.scan("f", before + hexed.encode() + after, NEEDLES)
        assert [f.what for f in found] == [f"the value of {name} (hex)"]
        never_shown(found)


@pytest.mark.parametrize("quote", [
    lambda v: urllib.parse.quote_from_bytes(v, safe=""),
    lambda v: urllib.parse.quote_from_bytes(v),
    lambda v: urllib.parse.quote_plus(v, safe=""),
], ids=["component", "path", "form"])
def test_a_url_encoded_value_is_found(quote: Callable[[bytes], str]) -> None:
    url = f"DATABASE_URL=postgres://gitlab:{quote(ODD)}@db.internal:5432/gitlab\n".encode()
    assert ODD not in url
    found = secretscan.scan("/etc/environment", url, NEEDLES)
    assert [f.what for f in found] == [f"the value of {ODD_NAME} (URL-encoded)"]
    never_shown(found)


def test_an_encoding_that_is_the_value_itself_or_too_short_is_no_needle() -> None:
    assert "URL-encoded" not in secretscan.encodings(VALUE).values()  # quoting changes nothing
    assert all(len(f) >= secretscan.MIN_VALUE_LENGTH for f in secretscan.encodings(b"12345678"))
    assert secretscan.encodings(b"abc") == {}  # every form of a short value would match by chance
    assert whats(b"YWJj 616263 abc", {b"abc": "short"}) == []


def test_a_value_and_its_encodings_are_each_named_once() -> None:
    data = (b"pw=" + VALUE + b"\n" + base64.b64encode(VALUE) + b"\n" + VALUE.hex().encode()
            + b"\n" + VALUE.hex().upper().encode() + b"\n" + base64.b64encode(b"x" + VALUE) + b"\n")
    found = secretscan.scan("f", data, NEEDLES)
    assert [f.what for f in found] == [f"the value of {NAME}", f"the value of {NAME} (base64)",
                                       f"the value of {NAME} (hex)"]
    assert all(f.what.startswith(secretscan.VALUE) for f in found)  # what `secrets scan` keeps
    never_shown(found)


def test_ordinary_files_hold_no_secret() -> None:
    """fleet's own sources and the roles' scripts, a lockfile's UUIDs, digests in hex and
    base64, a certificate bundle's worth of base64: nothing."""
    files = sorted((ROOT / "fleet").rglob("*.py")) + sorted((ROOT / "packer").rglob("*.sh"))
    assert len(files) > 20
    for path in files:
        assert whats(path.read_bytes()) == [], path
    lock = "".join(f'[[package]]\nname = "p{i}"\nid = "{uuid.uuid4()}"\nrequest_id: {uuid.uuid4()}\n'
                   f'"AccessorID": "{uuid.uuid4()}"\nupdate_token = "{uuid.uuid4()}"\n'
                   for i in range(200)).encode()
    assert whats(lock) == []
    digests = b"\n".join(hashlib.sha512(VALUE + bytes([i])).hexdigest().encode()
                         + b"  " + base64.b64encode(hashlib.sha512(bytes([i]) + VALUE).digest())
                         for i in range(256))
    assert whats(digests) == []
    assert whats(hashlib.sha256(VALUE).hexdigest().encode()) == []


# ---- formats --------------------------------------------------------------------------------

def test_a_private_key_is_found_but_not_its_bare_header() -> None:
    assert whats(b"config\n" + KEY) == ["a private key"]
    assert whats(b'if grep -q "-----BEGIN RSA PRIVATE KEY-----" "$f"; then\n') == []
    assert whats(b"\0\0ELF" + KEY) == []  # binaries embed test vectors (gnutls)


@pytest.mark.parametrize("line", [
    "VAULT_TOKEN=s.4Xq7rT0pLm2Nv8Yz1Wb5Kc9d\n",
    "token: hvs.CAESIABcDeFgHiJkLmNoPqRsTu1VwXyZ\n",
    "s.4Xq7rT0pLm2Nv8Yz1Wb5Kc9d",  # at the very start
    'curl -H "X-Vault-Token: hvb.AAAAAQJx7Kd0Lq9mZ2bVn4W8tYc1Rf5" $VAULT_ADDR\n',
])
def test_vault_tokens_are_found(line: str) -> None:
    assert text(line) == ["a Vault token"]


@pytest.mark.parametrize("line", [
    "x = os.ReadFromWithContextAndCancel()\n",
    "if association_id in s.ipv6_cidr_block_associations:\n",  # no upper case
    "import this.s.4Xq7rT0pLm2Nv8Yz1Wb5Kc9d\n",  # inside a dotted name
])
def test_identifiers_are_no_vault_tokens(line: str) -> None:
    assert text(line) == []


@pytest.mark.parametrize("line", [
    f"CONSUL_HTTP_TOKEN={CONSUL}\n",
    f'export CONSUL_HTTP_TOKEN="{CONSUL.upper()}"\n',
    f'curl -H "X-Consul-Token: {CONSUL}" http://127.0.0.1:8500/v1/kv/x\n',
    f'acl_agent_token = "{CONSUL}"\n',
    f"consul members -token={CONSUL}\n",
    f"consul kv get --token {CONSUL} fleet/x\n",
    f'{{"token": "{CONSUL}"}}\n',
    f'{{"AccessorID": "{uuid.uuid4()}", "SecretID": "{CONSUL}"}}\n',
    f"SecretID:         {CONSUL}\n",  # `consul acl token read`
    f"secret_id={CONSUL}\n",  # an AppRole's
    f"Authorization: Bearer {CONSUL}\n",
    f'acl {{\n  enabled = true\n  tokens {{\n    agent = "{CONSUL}"\n  }}\n}}\n',
    f'{{"acl": {{"tokens": {{"default": "{CONSUL}", "agent": "{CONSUL}"}}}}}}',
])
def test_consul_tokens_are_found_where_they_are_tokens(line: str) -> None:
    assert text(line) == ["a Consul token"]


@pytest.mark.parametrize("line", [
    f'"AccessorID": "{CONSUL}"\n',
    f"request_id: {CONSUL}\n",
    f'self.update_token = "{CONSUL}"\n',  # some other service's token
    f'oracle_token = "{CONSUL}"\n',  # names no ACL: `acl` inside a word
    f"token_accessor = {CONSUL}\n",
    f"secret_id_accessor: {CONSUL}\n",
    f"token: {CONSUL[:-1]}\n",  # not a UUID
    f"token read -id {CONSUL}\n",
    f"node_id = {CONSUL}\ncluster = {CONSUL}\n",
])
def test_a_uuid_that_is_no_token_is_not_flagged(line: str) -> None:
    assert text(line) == []


@pytest.mark.parametrize("line", [
    f"aws_access_key_id = {AWS_ID}\n",
    f"AKIA{AWS_ID[4:]}",
    f'"AccessKeyId": "ASIA{AWS_ID[4:]}",\n',
])
def test_aws_access_key_ids_are_found(line: str) -> None:
    assert text(line) == ["an AWS access key ID"]


@pytest.mark.parametrize("line", [
    "aws_access_key_id = AKIA" "IOSFODNN7EXAMPLE\n",  # the documentation's
    "X-Amz-Credential=AKIA" "EXAMPLE123456789%2F20190814\n",
    f"X{AWS_ID}\n",  # inside a word
    f"{AWS_ID}Q\n",
    f"{AWS_ID[:-1]}\n",  # too short
    f"{AWS_ID.lower()}\n",
])
def test_what_is_no_aws_access_key_id(line: str) -> None:
    assert text(line) == []


@pytest.mark.parametrize("line", [
    f"[default]\naws_secret_access_key = {AWS_SECRET}\n",
    f"export AWS_SECRET_ACCESS_KEY='{AWS_SECRET}'\n",
    f'{{"Credentials": {{"SecretAccessKey": "{AWS_SECRET}"}}}}',
    f"aws configure --aws-secret-access-key {AWS_SECRET}\n",
])
def test_aws_secret_access_keys_are_found_after_their_key(line: str) -> None:
    assert text(line) == ["an AWS secret access key"]


@pytest.mark.parametrize("line", [
    f"checksum = {AWS_SECRET}\n",  # 40 base64 characters alone
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfi" "CYEXAMPLEKEY\n",  # the documentation's
    "aws_secret_access_key = $AWS_SECRET_ACCESS_KEY\n",
    f"aws_secret_access_key = {AWS_SECRET}x\n",  # 41
    "aws_secret_access_key = abcdefghijklmnopqrstuvwxyzabcdefghijklmn\n",  # a placeholder
])
def test_what_is_no_aws_secret_access_key(line: str) -> None:
    assert text(line) == []


def test_formats_are_looked_for_in_text_files_only() -> None:
    blob = f"\0\0ELF CONSUL_HTTP_TOKEN={CONSUL} {AWS_ID} aws_secret_access_key={AWS_SECRET}"
    assert text(blob) == []


def test_formats_are_named_without_the_secret() -> None:
    found = secretscan.scan("f", f"CONSUL_HTTP_TOKEN={CONSUL}\nid={AWS_ID}\n".encode(), NEEDLES)
    assert [f.what for f in found] == ["a Consul token", "an AWS access key ID"]
    assert CONSUL not in repr(found) and AWS_ID not in repr(found)


# ---- needles and tar streams ----------------------------------------------------------------

def test_short_values_are_not_scanned() -> None:
    assert secretscan.needles([("a", "short"), ("b", "long-enough-value")]) == {
        b"long-enough-value": "b"}


def test_tar_stream_scan_names_the_file() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("etc/ok", b"fine"), ("etc/gitlab/leaked", VALUE),
                           ("etc/gitlab/encoded", b"echo " + base64.b64encode(VALUE) + b"\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    found = list(secretscan.scan_tar(buffer, NEEDLES))
    assert [(f.where, f.what) for f in found] == [
        ("/etc/gitlab/leaked", f"the value of {NAME}"),
        ("/etc/gitlab/encoded", f"the value of {NAME} (base64)")]
