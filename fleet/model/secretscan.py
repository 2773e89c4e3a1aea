"""Find secrets in what a bake produced: an image's files and the bake's log. Pure.

Two kinds of needle: the lab's actual secret values, as they are and in the encodings a script
or a program writes them in (base64, hex, URL-encoding); and formats that are secret wherever
they appear, whosever they are — private keys and Vault, Consul and AWS credentials, the
classes of rule that gitleaks and trufflehog ship. A finding says where and what, never the
value.
"""

from __future__ import annotations

import base64
import re
import tarfile
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

VALUE = "the value of "  # a finding's `what` for a secret value, then the value's name

# Values (and encoded forms) shorter than this match by accident in any large binary; they
# cannot be scanned for.
MIN_VALUE_LENGTH = 8


@dataclass(frozen=True)
class Finding:
    where: str     # a path inside the image, or the log's name
    what: str      # "a private key", or "the value of fleet/web/canary:db_password"; never the value


# ---- known values, as they are and encoded --------------------------------------------------

def encodings(value: bytes) -> dict[bytes, str]:
    """The forms a value takes once encoded -> the encoding's name, each at least
    MIN_VALUE_LENGTH long and other than the value itself.

    base64, in the standard and the URL-safe alphabet: a value inside a longer stream (`echo
    "$user:$password" | base64`, a Basic auth header, a JSON blob) starts at any of three
    offsets from a 3-byte group, and each offset encodes it differently. For each, the stable
    inner characters: those whose 6 bits come from the value alone, not from its unknown
    neighbours or the padding. hex, in lower and upper case. URL-encoding (a query string, a
    form, a connection URL), where it differs from the value.
    """
    forms: dict[bytes, str] = {}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):  # bytes of the stream before the value, in its 3-byte group
            stream = encode(bytes(offset) + value)
            first = -(-8 * offset // 6)  # the first character made of the value's bits only
            last = 8 * (offset + len(value)) // 6  # the end of the last such character
            forms.setdefault(stream[first:last], "base64")
    hexed = value.hex().encode()
    forms.setdefault(hexed, "hex")
    forms.setdefault(hexed.upper(), "hex")
    for quoted in (urllib.parse.quote_from_bytes(value, safe=""),
                   urllib.parse.quote_from_bytes(value, safe="/"),  # a path keeps its slashes
                   urllib.parse.quote_plus(value, safe="")):        # a form: space -> +
        forms.setdefault(quoted.encode(), "URL-encoded")
    return {form: name for form, name in forms.items()
            if len(form) >= MIN_VALUE_LENGTH and form != value}


def _value_needles(values: Mapping[bytes, str]) -> tuple[tuple[bytes, str], ...]:
    """(needle, what) for every value and every encoding of it, computed once per set of
    values: a scan of an image calls scan() for each of its thousands of files."""
    return _needles_of(tuple(values.items()))


@lru_cache(maxsize=8)
def _needles_of(values: tuple[tuple[bytes, str], ...]) -> tuple[tuple[bytes, str], ...]:
    table: dict[bytes, str] = {}
    for value, name in values:  # a value as it is comes first: its encodings never shadow it
        if len(value) >= MIN_VALUE_LENGTH:
            table.setdefault(value, f"{VALUE}{name}")
    for value, name in values:
        if len(value) >= MIN_VALUE_LENGTH:
            for form, encoding in encodings(value).items():
                table.setdefault(form, f"{VALUE}{name} ({encoding})")
    return tuple(table.items())


# ---- formats: secret whosever they are ---------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One form of a secret format. folded: the pattern is lower case and runs on the
    lower-cased text (a key in any case). key: what must end right where a match starts (in the
    64 bytes before it), for a check that a fixed-width lookbehind cannot make.

    Each pattern starts with a literal, and looks behind only after it: the regex engine then
    jumps from one occurrence of the literal to the next, where a leading lookbehind or
    alternation makes it try every byte — ten times slower over a large text."""

    pattern: re.Pattern[bytes]
    folded: bool = False
    key: re.Pattern[bytes] | None = None

    def search(self, data: bytes, lower: bytes) -> bool:
        text = lower if self.folded else data
        if self.key is None:
            return self.pattern.search(text) is not None
        return any(self.key.search(text, max(0, m.start() - 64), m.start())
                   for m in self.pattern.finditer(text))


def _folded(pattern: bytes, key: bytes | None = None) -> Rule:
    return Rule(re.compile(pattern), folded=True, key=None if key is None else re.compile(key))


# A value right after its key: `key=v`, `key: "v"`, `"key": "v"`, `key => 'v'`, `-key v`, a
# CLI's `Key:     v`; not `key_id = v`.
_IS = rb"[\s\"'`:=>]{1,16}"
_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])"
_VAULT_TOKEN = (rb"(?=[A-Za-z_-]*[0-9])(?=[a-z0-9_-]*[A-Z])(?=[A-Z0-9_-]*[a-z])"
                rb"[A-Za-z0-9_-]{24,}(?![A-Za-z0-9])")
# AWS's documentation's example keys (AKIAIOSFODNN7EXAMPLE, AKIAEXAMPLE123456789, wJalrXUtnFEMI/
# K7MDENG/bPxRfiCYEXAMPLEKEY) are in botocore's data and many a man page: not a secret.
_AWS_SECRET = rb"(?![a-z0-9/+]{0,33}example)(?=[a-z]*[0-9/+])[a-z0-9/+]{40}(?![a-z0-9/+=])"

# A private key is its armour header followed by a key body; a script that merely names the
# header (a check, a doc) does not match.
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n)?"
                         rb"[A-Za-z0-9+/=]{40,}")

FORMATS: Mapping[str, tuple[Rule, ...]] = {
    "a private key": (Rule(PRIVATE_KEY),),
    # service, batch and recovery tokens: hvs./hvb./hvr. (Vault >= 1.10) or s./b./r. (older
    # Vault, OpenBao), not inside a word. A random token has a digit, an upper- and a
    # lower-case letter; a CamelCase identifier in a binary has no digit, and
    # `s.ipv6_cidr_block` in a Python source no upper-case letter.
    "a Vault token": (Rule(re.compile(
        rb"\.(?:(?<=[^A-Za-z0-9_.][sbr]\.)|(?<=\A[sbr]\.)|(?<=[^A-Za-z0-9_.]hv[sbr]\.)|(?<=\Ahv[sbr]\.))"
        + _VAULT_TOKEN)),),
    # A Consul ACL token is a UUID, as are a great many things that are no secret (an
    # AccessorID, a request ID, a lockfile's entries): flagged only where it is a token — after
    # a key or header that is `token`, or names Consul or an ACL (CONSUL_HTTP_TOKEN,
    # X-Consul-Token, acl_agent_token; not update_token), or a `-token` flag; after `SecretID`
    # (Consul's, or an AppRole's secret_id) or `Bearer`; inside an agent's `tokens { ... }`.
    "a Consul token": (
        _folded(rb"token" + _IS + rb"(?:bearer\s+)?" + _UUID,
                key=rb"(?:\A|[^a-z0-9_-])"
                    rb"(?:-{1,2}|(?:[a-z0-9]+[_-])*(?:consul|acl)(?:[_-][a-z0-9]+)*[_-]?)?\Z"),
        _folded(rb"secret(?<![a-z0-9_-]secret)_?id" + _IS + _UUID),
        _folded(rb"bearer(?<![a-z0-9_-]bearer)\s+" + _UUID),
        _folded(rb"tokens[\s\"':=]{0,6}\{[^{}]{0,1000}?[\s\"':=]" + _UUID),
    ),
    # AKIA: a long-term key of an IAM user; ASIA: a temporary one from STS.
    "an AWS access key ID": (Rule(re.compile(
        rb"A(?<![A-Za-z0-9]A)(?:KIA|SIA)(?![A-Z0-9]{0,9}EXAMPLE)[A-Z0-9]{16}(?![A-Za-z0-9])")),),
    # 40 base64 characters alone are any hash or blob: only after its key (a credentials
    # file, the environment, STS's JSON, the CLI's --aws-secret-access-key).
    "an AWS secret access key": (_folded(rb"secret[_-]?access[_-]?key" + _IS + _AWS_SECRET),),
}


# ---- the scan ------------------------------------------------------------------------------

def scan(where: str, data: bytes, values: Mapping[bytes, str]) -> list[Finding]:
    """Every secret value (as it is or encoded) and secret format in one blob; one finding for
    each value and encoding, and each format.

    Values are looked for in every file. Formats are looked for in text files only (no NUL in
    the first 8 KiB): a key or token that ships lives in a PEM file, a config file or a
    script, while libraries such as gnutls embed public known-answer test keys, and a regex
    over every binary would cost seconds per image.
    """
    found = [Finding(where, what) for needle, what in _value_needles(values) if needle in data]
    if b"\0" not in data[:8192]:
        lower = data.lower()
        found += [Finding(where, what) for what, rules in FORMATS.items()
                  if any(rule.search(data, lower) for rule in rules)]
    return list(dict.fromkeys(found))


def scan_tar(stream: IO[bytes], values: Mapping[bytes, str]) -> Iterator[Finding]:
    """Scan every regular file of a tar stream (e.g. `docker export`), reading it once."""
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isreg():
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                yield from scan("/" + member.name.lstrip("./"), handle.read(), values)


def needles(secrets: Iterable[tuple[str, str]]) -> dict[bytes, str]:
    """(name, value) pairs -> {value bytes: name}, skipping values too short to scan. scan()
    derives the encoded forms of each value from this (once for each set of values)."""
    return {value.encode(): name for name, value in secrets if len(value) >= MIN_VALUE_LENGTH}
