//! The coordinator's shared state: config, store, fleet registry and CA,
//! reached by every service through one `Arc<App>`.

use std::time::{Duration, SystemTime};

use cutover_common::identity::{self, Identity};
use cutover_common::labels::Labels;
use cutover_common::pki::{Ca, Issue, PkiError, Usage};
use cutover_common::time::now_ms;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::config::CoordinatorConfig;
use crate::fleet::Fleet;
use crate::store::{self, Audit, Store, StoreError, TokenRecord};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    pub cfg: CoordinatorConfig,
    pub store: Store,
    pub fleet: Fleet,
    pub ca: Ca,
    /// URL agents and operators reach this coordinator at.
    pub url: String,
    /// Commands in flight and who waits for them.
    pub commands: crate::commands::CommandHub,
    /// Running rollouts.
    pub rollouts: crate::rollout::Rollouts,
    pub metrics: crate::metrics::Metrics,
    /// Rate limits and refusal summaries (what one peer may cost).
    pub guard: std::sync::Arc<crate::guard::Guard>,
    /// Rollout events to the webhooks (set once the app exists).
    pub notifier: std::sync::OnceLock<crate::notify::Notifier>,
    /// The leader term this coordinator acts in (PostgreSQL store), sent
    /// with every command and session; `None` with the SQLite store (one
    /// coordinator, nothing to fence).
    pub leadership: Option<Leadership>,
    /// When this coordinator started serving (Unix ms).
    pub started_ms: i64,
    /// `cutover logs` requests waiting for their hosts.
    pub logs: crate::logs::LogsHub,
}

/// This coordinator leads (PostgreSQL store).
#[derive(Debug, Clone)]
pub struct Leadership {
    pub term: u64,
    pub member: crate::leader::Member,
    pub lease: Duration,
}

impl App {
    /// The term commands and sessions carry (0: not fenced).
    pub fn term(&self) -> u64 {
        self.leadership.as_ref().map_or(0, |l| l.term)
    }
}

/// A join token as handed to a person: `cutover1.<id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
}

const TOKEN_PREFIX: &str = "cutover1";

impl JoinToken {
    /// A fresh random token (64-bit id, 192-bit secret).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let id: [u8; 8] = rng.random();
        let secret: [u8; 24] = rng.random();
        Self {
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    /// Parses the printed form.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != TOKEN_PREFIX || parts.next().is_some() || id.len() != 16 || secret.len() != 48
        {
            return None;
        }
        if !id
            .chars()
            .chain(secret.chars())
            .all(|c| c.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Self {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// The printed form.
    pub fn render(&self) -> String {
        format!("{TOKEN_PREFIX}.{}.{}", self.id, self.secret)
    }

    /// What the store keeps instead of the secret.
    pub fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

impl App {
    /// Deployment `id` started or finished: tells the webhooks, if any.
    pub fn notify(&self, event: crate::notify::Event, id: &str) {
        if let Some(n) = self.notifier.get() {
            n.send(event, id);
        }
    }

    /// Writes an audit line (and logs it). A failing audit write is logged
    /// as an error but does not fail the call that is being audited.
    /// Client-supplied text is cut to its bounds first, and refusals past a
    /// few per actor and action a minute are counted and written as one
    /// summary row ([`crate::guard::DenialLog`]): no peer can fill the disk
    /// or the log by being refused.
    pub async fn audit(&self, a: Audit) {
        let a = crate::guard::bounded(a);
        let (own, mut rows) = if a.outcome == store::Outcome::Denied {
            self.guard.denial(&a)
        } else {
            (true, self.guard.denial_summaries())
        };
        if own {
            rows.push(a);
        }
        self.write_audit(rows).await;
    }

    /// Writes the refusal summaries whose minute has ended.
    pub async fn flush_audit_summaries(&self) {
        let rows = self.guard.denial_summaries();
        self.write_audit(rows).await;
    }

    async fn write_audit(&self, rows: Vec<Audit>) {
        for a in rows {
            tracing::info!(
                actor = %a.actor, action = a.action, target = %a.target, outcome = a.outcome.as_str(),
                detail = %a.detail, "audit"
            );
            let now = now_ms();
            if let Err(e) = self.store.call(move |c| store::audit(c, now, &a)).await {
                tracing::error!(error = %cutover_common::error_chain(&e), "writing the audit log failed");
            }
        }
    }

    /// Creates and stores a join token; returns it with its expiry.
    pub async fn create_token(
        &self,
        ttl: Duration,
        uses: u32,
        labels: Labels,
        created_by: String,
    ) -> Result<(JoinToken, i64), StoreError> {
        let token = JoinToken::generate();
        let now = now_ms();
        let expires_at = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let rec = TokenRecord {
            id: token.id.clone(),
            secret_hash: token.secret_hash(),
            labels,
            created_at: now,
            expires_at,
            uses_total: uses,
            uses_left: uses,
            created_by,
        };
        self.store
            .call(move |c| store::insert_token(c, &rec))
            .await?;
        Ok((token, expires_at))
    }

    /// Signs a host CSR for `host` with the configured lifetime.
    pub fn sign_host_csr(
        &self,
        host: &str,
        csr_der: &[u8],
    ) -> Result<(String, identity::CertInfo), PkiError> {
        let req = Issue::new(
            Identity::Host(host.into()),
            Usage::Client,
            self.cfg.host_cert_ttl,
        );
        let pem = self.ca.sign_csr(csr_der, &req)?;
        let der = cutover_common::pki::cert_der_from_pem(&pem, "issued certificate")?;
        let info = identity::cert_info(&der)?;
        Ok((pem, info))
    }
}

/// Milliseconds since the epoch of a `SystemTime`.
pub fn ms(t: SystemTime) -> i64 {
    cutover_common::time::to_unix_ms(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_malformed_ones_are_rejected() {
        let t = JoinToken::generate();
        assert_eq!(JoinToken::parse(&t.render()), Some(t.clone()));
        assert_eq!(JoinToken::parse("cutover1.abc.def"), None);
        assert_eq!(
            JoinToken::parse(&t.render().replace("cutover1", "cutover2")),
            None
        );
        assert_ne!(t.secret_hash(), t.secret);
    }
}
