# Sourced by the bench scripts: builds the binaries as shipped and points
# the harness at them (CUTOVER_BIN_DIR): the coordinator, CLI and test
# programs with the `release` profile, the agent with `release-agent`
# (built for size, as the .deb ships it; see Cargo.toml).
cargo build --release --bins -p cutover-coordinator -p cutover-tests -p cutover-bench
cargo build --profile release-agent --bin cutover-agent -p cutover-agent
bins="$PWD/target/bench-bin"
rm -rf "$bins"
mkdir -p "$bins"
for f in target/release/*; do
  if [ -f "$f" ] && [ -x "$f" ]; then ln -s "$PWD/$f" "$bins/"; fi
done
ln -sf "$PWD/target/release-agent/cutover-agent" "$bins/cutover-agent"
export CUTOVER_BIN_DIR="$bins"
