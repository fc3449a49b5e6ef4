#!/bin/sh
# Builds both packages as they ship: the coordinator with the release
# profile, the agent with release-agent (built for size), then adds
# md5sums (packaging/finish-deb.sh). Needs cargo-deb
# (`cargo install cargo-deb --locked`). Writes target/debian/*.deb.
set -eu
cd "$(dirname "$0")/.."
cargo deb -p cutover-coordinator
cargo deb -p cutover-agent --profile release-agent
packaging/finish-deb.sh target/debian/cutover-coordinator_*.deb target/debian/cutover-agent_*.deb
