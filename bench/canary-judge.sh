#!/bin/sh
# Canary analysis on real traffic: 20 canaries of a good gunicorn release
# and 20 of one failing a fifth of its real requests (health endpoint
# fine), alternating, under load. Needs Debian's gunicorn and
# python3-prometheus-client. Writes bench/results/canary-judge.json.
# Options: --rounds 20 (of each kind) --hosts 4
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-canary-judge "$@"
