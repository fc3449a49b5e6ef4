#!/bin/sh
# Swap under load on one host: Cutover's handover swap, a stop-then-start
# restart and `supervisorctl restart`, same service, same clients.
# Needs supervisord for the third (apt-get install supervisor).
# Writes bench/results/swap-load.json. Options: --requests 1000000
# --swaps 30 --warmup-secs 3 (left out of every window)
# --steady-secs 20 --rate N (N requests a second in all from
# eight paced clients, instead of four that send as fast as answers come;
# written to bench/results/swap-load-rate-N.json), --only handover|restart|supervisord
# (one phase, for experiments)
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-swap-load "$@"
