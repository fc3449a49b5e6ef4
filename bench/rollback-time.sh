#!/bin/sh
# Rollback time on 6 hosts: from the first failing probe of a bad version
# to every host back on the previous release. Writes
# bench/results/rollback-time.json (-gunicorn.json with --app gunicorn). Options: --hosts 6 --rounds 3
# --interval-ms 1000 --failure-threshold 3 --bad-after-ms 3000
# --app gunicorn (Debian's gunicorn instead of the demo service)
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-rollback-time "$@"
