#!/bin/sh
# Rolling restart of 20 hosts (network namespaces, as root) in batches of
# 4, with Cutover and with Ansible, in the same run. Needs ansible-core
# (apt-get install ansible-core). Writes bench/results/rolling-vs-ansible.json.
# Options: --hosts 20 --batch 4 --rounds 3 --ready-delay-ms 0
set -eu
cd "$(dirname "$0")/.."
. bench/build.sh
exec target/release/bench-rolling-vs-ansible "$@"
