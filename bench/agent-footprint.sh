#!/bin/sh
# Agent footprint: idle RSS/CPU over 60 s, RSS across 1,000 swaps.
# Writes bench/results/agent-footprint.json. Options: --idle-secs N --swaps N
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-agent-footprint "$@"
