//! Code shared by the agent and the coordinator: identities and labels,
//! the cluster PKI (rcgen) and TLS (rustls) helpers, typed config loading
//! (figment), file helpers and logging setup.
//!
//! Nothing in here knows about rollouts; it is the foundation both binaries
//! stand on.

#![forbid(unsafe_code)]

pub mod config;
pub mod deploy;
pub mod fsutil;
pub mod identity;
pub mod labels;
pub mod logging;
pub mod net;
pub mod pki;
pub mod sdnotify;
pub mod service;
pub mod time;
pub mod tls;

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
