#!/usr/bin/env bash
# The whole test suite, unit and lab integration, from a fresh clone. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "test: pytest collected no tests: that is a broken suite, not a pass" >&2
  exit 1
fi
exit "$code"
