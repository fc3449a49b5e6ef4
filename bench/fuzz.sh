#!/bin/sh
# Fuzzing on the stable toolchain: the property tests named `fuzz_*`
# (proptest) with many cases instead of CI's 256 each. They cover the
# spec and config parsers (common, agent, coordinator), the tar unpacker,
# commands decoded from the wire, an agent's messages to the coordinator,
# operators' commands and enrollment requests, and apps' metrics text.
#
#   bench/fuzz.sh                 # 20,000 cases each (a few minutes)
#   CASES=200000 bench/fuzz.sh    # longer
#
# A failure prints the smallest input found and proptest keeps it in
# proptest-regressions/ beside the test, to be replayed by every run.
set -eu
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${CASES:-20000}"
export PROPTEST_MAX_SHRINK_ITERS="${PROPTEST_MAX_SHRINK_ITERS:-10000}"
started=$(date +%s)
cargo nextest run --workspace --no-fail-fast -E 'test(/fuzz_/)' \
    --no-tests=fail
echo "fuzz: ${PROPTEST_CASES} cases per test in $(( $(date +%s) - started ))s"
