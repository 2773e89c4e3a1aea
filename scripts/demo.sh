#!/usr/bin/env bash
# The main job on the example fleet: install, bring the lab up, validate, bake every cattle
# role (then again, cached), list the catalog, show the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
fleet=.venv/bin/fleet
$fleet lab up
$fleet validate
$fleet bake --all
$fleet bake --all    # unchanged inputs: every role says "cached"
$fleet images
$fleet lab status
