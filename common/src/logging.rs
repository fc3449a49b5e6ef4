//! `tracing` setup shared by both binaries: `RUST_LOG`-style filter from
//! `CUTOVER_LOG` (default `info`), to stderr, colored only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default` is used when `CUTOVER_LOG` is
/// not set, e.g. `"info"` for daemons and `"warn"` for CLI commands.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
