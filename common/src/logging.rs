//! `tracing` setup shared by both binaries: a filter from `CUTOVER_LOG`
//! (default `info`), to stderr, colored only on a terminal.
//!
//! The filter is a list of `target=level` directives and at most one bare
//! level, as in `RUST_LOG`: `debug`, or `info,cutover_agent=debug,h2=warn`.
//! (`tracing_subscriber`'s `Targets`, not `EnvFilter`: no span or field
//! filters, and no regular-expression engine in every agent's memory.)

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `default` is used when `CUTOVER_LOG` is
/// not set, e.g. `"info"` for daemons and `"warn"` for CLI commands. A
/// `CUTOVER_LOG` that does not parse is reported on stderr, and `default`
/// is used.
pub fn init(default: &str) {
    let filter = match std::env::var("CUTOVER_LOG") {
        Ok(v) if !v.trim().is_empty() => parse_filter(&v).unwrap_or_else(|e| {
            eprintln!("warning: CUTOVER_LOG={v:?} is not a log filter ({e}); using {default:?}");
            parse_filter(default).unwrap_or_default()
        }),
        _ => parse_filter(default).unwrap_or_default(),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}

/// A `CUTOVER_LOG` value: `level` or `target=level`, comma-separated.
pub fn parse_filter(s: &str) -> Result<Targets, String> {
    Targets::from_str(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn filters_parse_levels_and_targets_and_refuse_nonsense() {
        let f = parse_filter("info,cutover_agent=debug,h2=warn").unwrap();
        assert!(f.would_enable("cutover_agent::runtime", &Level::DEBUG));
        assert!(!f.would_enable("h2::proto", &Level::INFO));
        assert!(f.would_enable("tonic", &Level::INFO));
        assert!(!f.would_enable("tonic", &Level::DEBUG));
        let f = parse_filter("debug").unwrap();
        assert!(f.would_enable("anything", &Level::DEBUG));
        assert!(parse_filter("cutover_agent=loud").is_err());
    }
}
