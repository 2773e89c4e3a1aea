#!/usr/bin/env bash
# Seeds a gitaly pet of the lab with generated repositories, so there is something to clone,
# push and move: COUNT bare repositories group/project-NNN.git on the pet's volume, made by the
# pet's own fleet-gitaly (packer/scripts/lib/fleet-gitaly); existing ones are kept, so a rerun
# only adds what is missing. Further arguments go to `fleet-gitaly seed` as they are.
#
#   scripts/seed-gitaly.sh                               # 20 repositories on gitaly-01
#   scripts/seed-gitaly.sh gitaly-stg-01 200 --commits 10 --size 5000000   # ~1 GB
#
# The pet is the container <fleet>-<INSTANCE> (fleet.toml's [fleet] name, or FLEET_FILE's).
set -euo pipefail
instance=${1:-gitaly-01}
count=${2:-20}
shift $(($# < 2 ? $# : 2))
file=${FLEET_FILE:-$(dirname "$0")/../fleet.toml}
fleet=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["fleet"]["name"])' "$file")
exec docker exec "$fleet-$instance" fleet-gitaly seed "$count" "$@"
