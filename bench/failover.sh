#!/bin/sh
# Coordinator failover (issue 27): three coordinators on a throwaway
# PostgreSQL (Debian's `postgresql` must be installed). The leader is
# killed mid-rollout, ten times: time until the rollout moves again; then
# 10,000 simulated agents: time until all are back on the new leader.
# Writes bench/results/failover.json. Options: --rounds N --lease 3s
# --agents N --per-worker 2500 --skip-rollout --skip-agents
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-failover "$@"
