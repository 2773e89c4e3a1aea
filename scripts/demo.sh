#!/usr/bin/env bash
# The main job on the example fleet: install, bring the lab up, validate, show the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
fleet=.venv/bin/fleet
$fleet lab up
$fleet validate
$fleet lab status
