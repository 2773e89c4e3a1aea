"""Find secrets in what a bake produced: an image's files and the bake's log. Pure.

Two kinds of needle: the lab's actual secret values (exact bytes), and formats that are
secret wherever they appear — private keys and Vault/OpenBao tokens.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

VALUE = "the value of "  # a finding's `what` for a secret value, then the value's name

# Values shorter than this match by accident in any large binary; they cannot be scanned for.
MIN_VALUE_LENGTH = 8

# A private key is its armour header followed by a key body; a script that merely names the
# header (a check, a doc) does not match.
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n)?"
                         rb"[A-Za-z0-9+/=]{40,}")
FORMATS: Mapping[str, re.Pattern[bytes]] = {
    "a private key": PRIVATE_KEY,
    # service, batch and recovery tokens: hvs./hvb./hvr. (Vault >= 1.10) or s./b./r. (older
    # Vault, OpenBao). A random token has a digit; CamelCase identifiers in binaries do not.
    "a Vault token": re.compile(
        rb"(?<![A-Za-z0-9_.])(?:hv[sbr]|[sbr])\.(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{24,}(?![A-Za-z0-9])"),
}


@dataclass(frozen=True)
class Finding:
    where: str     # a path inside the image, or the log's name
    what: str      # "a private key", or "the value of fleet/web/canary:db_password"; never the value


def scan(where: str, data: bytes, values: Mapping[bytes, str]) -> list[Finding]:
    """Every secret value and secret format in one blob.

    Values are looked for in every file. Formats are looked for in text files only (no NUL in
    the first 8 KiB): a key or token that ships lives in a PEM file, a config file or a
    script, while libraries such as gnutls embed public known-answer test keys, and a regex
    over every binary would cost seconds per image.
    """
    found = [Finding(where, f"{VALUE}{name}") for value, name in values.items()
             if len(value) >= MIN_VALUE_LENGTH and value in data]
    if b"\0" not in data[:8192]:
        found += [Finding(where, what) for what, pattern in FORMATS.items() if pattern.search(data)]
    return found


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
    """(name, value) pairs -> {value bytes: name}, skipping values too short to scan."""
    return {value.encode(): name for name, value in secrets if len(value) >= MIN_VALUE_LENGTH}
