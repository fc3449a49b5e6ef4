#!/bin/sh
# Soak: 300 deployments on 3 hosts (namespaces when allowed), sampling
# memory, descriptors, files and store size of the coordinator and every
# agent each 100, and the time of `cutover hosts`, `history`, `status`.
# Reports growth per 100 deployments. Writes bench/results/soak.json.
# Options: --deployments 300 --every 100
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-soak "$@"
