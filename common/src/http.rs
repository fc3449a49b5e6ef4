//! HTTP clients (the agent's artifact downloads, the coordinator's
//! webhooks and Prometheus queries): https servers are checked against
//! the system's CA certificates (Debian's `ca-certificates`, recommended
//! by both packages). A host without any still gets a client: plain http
//! works, and https is refused before connecting, naming the cause, rather
//! than the process failing (a minimal Debian has no `ca-certificates`).

use std::sync::atomic::{AtomicBool, Ordering};

/// A client, and whether it can check https servers.
#[derive(Debug, Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    /// The system's CA certificates were found.
    pub checks_https: bool,
}

impl HttpClient {
    /// Builds `make()`; where the system has no CA certificates, the same
    /// client trusting none (said once in the log).
    pub fn build(make: impl Fn() -> reqwest::ClientBuilder) -> Result<Self, reqwest::Error> {
        // https needs a process-wide crypto provider (the one Cutover uses).
        let _ = rustls::crypto::ring::default_provider().install_default();
        match make().build() {
            Ok(client) => Ok(Self {
                client,
                checks_https: true,
            }),
            Err(first) => {
                // Only the system roots differ: when this builds, they were
                // what failed.
                let Ok(client) = make().tls_certs_only([]).build() else {
                    return Err(first);
                };
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %crate::error_chain(&first),
                        "no CA certificates on this host: https servers cannot be checked, so https is refused (install Debian's ca-certificates); http works"
                    );
                }
                Ok(Self {
                    client,
                    checks_https: false,
                })
            }
        }
    }

    /// Why `url` will not be fetched, before trying: https on a host
    /// without CA certificates.
    pub fn refusal(&self, url: &str) -> Option<String> {
        (!self.checks_https
            && url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://")))
        .then(|| NO_CA_CERTIFICATES.to_string())
    }
}

/// The refusal of https on a host without CA certificates.
pub const NO_CA_CERTIFICATES: &str = "this host has no CA certificates to check an https server with: install Debian's ca-certificates (apt-get install ca-certificates), or use http:// (the sha256 still checks an artifact)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_refused_by_name_only_without_ca_certificates() {
        let c = HttpClient::build(reqwest::Client::builder).unwrap();
        let without = HttpClient {
            checks_https: false,
            ..c.clone()
        };
        assert_eq!(without.refusal("http://artifacts.example/a.tar"), None);
        let why = without.refusal("HTTPS://artifacts.example/a.tar").unwrap();
        assert!(why.contains("ca-certificates"), "{why}");
        let with = HttpClient {
            checks_https: true,
            ..c
        };
        assert_eq!(with.refusal("https://artifacts.example/a.tar"), None);
    }
}
