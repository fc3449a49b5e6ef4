#!/bin/sh
# Coordinator scale: 1k, 5k, 10k simulated agents (real mTLS sessions) in
# worker processes of 2,500; at each step memory per agent, then the
# fan-out of one deployment's first command and the memory after it;
# reconnect after a coordinator SIGKILL.
# Writes bench/results/fleet-scale.json. Options: --steps 1000,5000,10000
# --per-worker 2500 --pin --stage-ms N --memory-only --ticket-lifetime 1m
# --quiet-secs N --no-collect
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-fleet-scale "$@"
