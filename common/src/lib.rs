//! Code shared by the agent and the coordinator: identities and labels,
//! the cluster PKI (rcgen) and TLS (rustls) helpers, typed config loading
//! (figment), file helpers and logging setup.
//!
//! Nothing in here knows about rollouts; it is the foundation both binaries
//! stand on.

#![forbid(unsafe_code)]

pub mod cli_docs;
pub mod compat;
pub mod config;
pub mod deploy;
pub mod failure;
pub mod fsutil;
pub mod fuzz;
pub mod http;
pub mod identity;
pub mod labels;
pub mod logging;
pub mod net;
pub mod pki;
pub mod sdnotify;
pub mod service;
pub mod throwaway_pg;
pub mod time;
pub mod tls;
pub mod windows;
pub mod wire;

/// What an agent's refusal of a command says when the command's id is
/// already used for a different command; the coordinator audits results
/// carrying it.
pub const REUSED_COMMAND_ID: &str = "is already used for a different command";

/// How an agent's refusal of a deployment's activation (or recreate
/// stop) begins when an operator drained the service on that host and
/// the deployment did not ask for `--include-drained`: the coordinator
/// counts the host as skipped, not failed (docs/load-balancers.md).
pub const SKIPPED_DRAINED: &str = "skipped: the service is drained on this host";

/// The version every Cutover binary reports (agent_version in `Hello`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Formats an error with its whole `source()` chain, for logs and for the
/// last line a user sees.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    join_chain(std::iter::once(err.to_string()).chain(source_messages(err)))
}

/// The messages of `err`'s sources, outermost first (not `err`'s own).
pub fn source_messages(err: &(dyn std::error::Error + 'static)) -> impl Iterator<Item = String> {
    std::iter::successors(err.source(), |e| e.source()).map(|e| e.to_string())
}

/// Joins the messages of an error chain with `: `, leaving out a message
/// already contained in an earlier one (wrappers often repeat their source).
pub fn join_chain(parts: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for s in parts {
        if s.is_empty() || out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// `s` cut to at most `max` bytes (on a character boundary) for a log line,
/// an error or the audit log, saying how long it was when cut. Anything a
/// client sends passes through here before it is written anywhere, so a
/// peer cannot make the coordinator or an agent store or print megabytes.
pub fn truncate_for_display(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

/// A command-line tool whose output is piped into `head`, `grep -q` or
/// `true` ends quietly when the reader goes away, as Unix tools do
/// (status 141, 128 + SIGPIPE), instead of panicking with a backtrace:
/// Rust ignores SIGPIPE, so `print!` to a closed pipe panics. Installs a
/// panic hook that does this and leaves every other panic as it was.
pub fn quiet_on_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        previous(info);
    }));
}

/// The exit status of a command line that could not be parsed (a typo'd
/// flag, a missing argument): 64, `EX_USAGE`, so that scripts tell it from
/// a deployment that failed (2), rolled back (3) or was aborted (4).
pub const EXIT_USAGE: u8 = 64;

/// Parses a command line as clap does, but exits `EXIT_USAGE` (not clap's
/// 2) when it is wrong; help and version print and exit 0.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(t) => t,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                i32::from(EXIT_USAGE)
            } else {
                0
            });
        }
    }
}

#[cfg(test)]
mod lib_tests {
    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_its_length() {
        assert_eq!(super::truncate_for_display("short", 10), "short");
        let cut = super::truncate_for_display(&"é".repeat(100), 5);
        assert_eq!(cut, "éé... (200 bytes)");
    }
}
