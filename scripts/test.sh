#!/usr/bin/env bash
# The whole test suite, unit and lab integration, from a fresh clone. CI runs exactly this.
#
# Without arguments it runs in two parts on the one lab: first every test but those marked
# `alone`, two at a time (pytest-xdist, a test file per worker: each test has a fleet of its
# own on the shared lab, and most of their time is spent waiting on nodes, not on the CPU),
# then the `alone` ones one after another (they stop the lab's dockerd or servers, bring up a
# cluster lab, or roll 20 nodes). With arguments, pytest runs exactly those, in one process.
# pytest's exit code 5 (it collected no test) is a broken suite, never a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m pytest "$@"
  codes=$?
else
  .venv/bin/fleet lab up >/dev/null  # once, before the workers start (each asks again)
  .venv/bin/python -m pytest -n 2 --dist loadfile -m "not alone"
  first=$?
  .venv/bin/python -m pytest -m alone
  codes="$first $?"
fi
set -e
for code in $codes; do
  if [ "$code" = 5 ]; then
    echo "test: pytest collected no tests: that is a broken suite, not a pass" >&2
    exit 1
  fi
done
for code in $codes; do
  [ "$code" = 0 ] || exit "$code"
done
