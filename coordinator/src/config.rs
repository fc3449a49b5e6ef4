//! The coordinator's config (`coordinator.toml`, `CUTOVER_*` variables).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_common::config::{self, ConfigError, Origin};
use serde::{Deserialize, Serialize};

/// The shipped example config (every key, with a valid value): a type
/// error in a config is answered with its line for the key.
const EXAMPLE: &str = include_str!("../../packaging/examples/coordinator.toml");

/// Default config file location.
pub const DEFAULT_PATH: &str = "/etc/cutover/coordinator.toml";

/// TLS 1.3 allows a ticket at most 7 days (RFC 8446, 4.6.1).
const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything `cutover serve` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Store, PKI and runtime files.
    pub state_dir: PathBuf,
    /// Address the gRPC server (agents, enrollment, operators) listens on.
    pub listen: SocketAddr,
    /// Where Prometheus scrapes `GET /metrics` (plain HTTP; none when
    /// unset). Bind it where only the monitoring reaches it.
    pub metrics_listen: Option<SocketAddr>,
    /// URL agents and operators use to reach this coordinator, printed in
    /// instructions and written into operator CLI configs.
    pub advertise_url: Option<String>,
    /// Where the CA and server certificate live (default `state_dir/pki`).
    pub pki_dir: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the server certificate.
    pub server_names: Vec<String>,
    /// A host that sends nothing for this long is marked `lost`.
    #[serde(with = "humantime_serde")]
    pub host_timeout: Duration,
    /// How often each side sends a heartbeat on an idle session.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Lifetime of host certificates (renewed at about two thirds).
    #[serde(with = "humantime_serde")]
    pub host_cert_ttl: Duration,
    /// Default lifetime of operator certificates.
    #[serde(with = "humantime_serde")]
    pub operator_cert_ttl: Duration,
    /// Longest lifetime a join token may be given.
    #[serde(with = "humantime_serde")]
    pub max_token_ttl: Duration,
    /// How long a TLS session ticket lets a host resume (skip the
    /// certificates and signatures) when it reconnects, across restarts:
    /// its key seals tickets this long and opens them as long again.
    /// `0s` turns resumption off.
    #[serde(with = "humantime_serde")]
    pub session_ticket_lifetime: Duration,
    pub limits: Limits,
    /// What the store keeps, and for how long.
    pub retention: Retention,
    /// Where rollout events are sent.
    pub notify: Notify,
    /// The store: unset for the SQLite file in `state_dir` (one
    /// coordinator); `postgres://USER@HOST:PORT/DATABASE` for PostgreSQL,
    /// which several coordinators share (one leads, the others stand by;
    /// docs/operator-guide.md, "High availability"). The URL holds no
    /// password.
    pub store: Option<String>,
    /// File holding the PostgreSQL password (mode 0600): read at start,
    /// never logged.
    pub store_password_file: Option<PathBuf>,
    /// PEM certificate(s) the PostgreSQL server's certificate chains to:
    /// TLS to the database is then required (and it is required for any
    /// database not on this machine).
    pub store_ca_file: Option<PathBuf>,
    /// This coordinator's name among several (`cutover coordinators`);
    /// default the hostname.
    pub name: Option<String>,
    /// PostgreSQL store: how long the leader's lease lasts unless renewed
    /// (every third of it). A dead leader is replaced within about this
    /// long; a leader that cannot renew steps down when it runs out.
    #[serde(with = "humantime_serde")]
    pub leader_lease: Duration,
    /// `[environments.NAME]`: rules for every deployment to an
    /// environment (a spec's `targets.environment`), whatever its spec
    /// says: approval, deploy windows, freezes.
    pub environments: std::collections::BTreeMap<String, EnvironmentPolicy>,
}

/// `[environments.NAME]` in coordinator.toml. An operator's rollback is
/// never held by any of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentPolicy {
    /// Every deployment needs an approval by an operator other than the
    /// one who submitted it (as the spec's `targets.approval`).
    pub approval: bool,
    /// When deployments may start, in UTC, as the spec's
    /// `targets.windows` (`"mon-fri 09:00-16:00"`): a deployment must be
    /// inside these and the spec's own.
    pub windows: Vec<String>,
    /// Spans no deployment starts in (`cutover deploy --outside-window
    /// REASON` starts one anyway, audited).
    pub freezes: Vec<Freeze>,
}

/// A freeze: from, until (RFC 3339, UTC), and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub from: String,
    pub until: String,
    #[serde(default)]
    pub reason: String,
}

impl Freeze {
    /// Its span in Unix ms, `[from, until)`.
    pub fn span_ms(&self) -> Result<(i64, i64), String> {
        let at = |k: &str, v: &str| {
            humantime::parse_rfc3339(v)
                .map(cutover_common::time::to_unix_ms)
                .map_err(|e| format!("`{k}`: {e}: expected a time in RFC 3339, UTC, e.g. \"2026-12-20T00:00:00Z\""))
        };
        let (from, until) = (at("from", &self.from)?, at("until", &self.until)?);
        if until <= from {
            return Err(format!(
                "`until` ({}) is not after `from` ({})",
                self.until, self.from
            ));
        }
        Ok((from, until))
    }
}

/// Where rollout events go (docs/operator-guide.md, "Notifications"):
/// each deployment's start, waits for an operator, pauses and end, as JSON
/// (or a chat message), POSTed to every webhook that wants it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    /// http:// or https:// URLs that hold no secret: every event, as JSON.
    pub webhooks: Vec<String>,
    /// Files each holding one webhook URL (a chat service's URL is its
    /// credential): read at start, never logged (only their host is).
    pub webhook_files: Vec<PathBuf>,
    /// How long one delivery may take; each is tried three times, 1 s then
    /// 3 s apart.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Webhooks with a choice of events, services, environments, format
    /// and a signing key (`[[notify.hooks]]`).
    pub hooks: Vec<NotifyHook>,
}

/// One webhook of `[[notify.hooks]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyHook {
    /// An http:// or https:// URL that holds no secret; or `url_file`.
    pub url: Option<String>,
    /// A file holding the URL (read at start, never logged).
    pub url_file: Option<PathBuf>,
    /// `cutover` (the event and the deployment as JSON) or `slack` (a
    /// `{"text": ...}` message, which Slack and compatible chat webhooks
    /// show).
    pub format: HookFormat,
    /// Only these events (empty: all): `started`, `waiting` (for a promote
    /// or an approval), `paused`, `succeeded`, `failed`, `rolled_back`,
    /// `aborted`.
    pub events: Vec<String>,
    /// Only deployments of these services (empty: every one).
    pub services: Vec<String>,
    /// Only deployments to these environments (empty: every one).
    pub environments: Vec<String>,
    /// A file holding a signing key (mode 0600): each POST carries
    /// `X-Cutover-Timestamp` (Unix seconds) and `X-Cutover-Signature:
    /// sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` with the key.
    pub secret_file: Option<PathBuf>,
}

/// A webhook's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookFormat {
    #[default]
    Cutover,
    Slack,
}

/// The events a hook may ask for.
pub const NOTIFY_EVENTS: &[&str] = &[
    "started",
    "waiting",
    "paused",
    "succeeded",
    "failed",
    "rolled_back",
    "aborted",
];

impl Default for Notify {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            webhook_files: Vec::new(),
            timeout: Duration::from_secs(5),
            hooks: Vec::new(),
        }
    }
}

/// How long the store keeps what grows with use (docs/operator-guide.md,
/// "Retention"). Pruned every hour, and at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// A finished deployment's rollout details (every host's steps and
    /// verdicts, most of its size) are dropped after this; its summary row
    /// (service, version, environment, phase, times: what `history` and
    /// the DORA figures use) stays for `deployments`.
    #[serde(with = "humantime_serde")]
    pub rollout_details: Duration,
    /// Whatever their age, the newest this many deployments of each
    /// service keep their details (rollbacks and blue/green switches read
    /// them).
    pub keep_latest: u32,
    /// Deployment summaries older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub deployments: Duration,
    /// Commands sent to hosts and their results.
    #[serde(with = "humantime_serde")]
    pub commands: Duration,
    /// Audit log lines.
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            rollout_details: Duration::from_secs(30 * DAY),
            keep_latest: 20,
            deployments: Duration::from_secs(730 * DAY),
            commands: Duration::from_secs(30 * DAY),
            audit: Duration::from_secs(400 * DAY),
        }
    }
}

/// Explicit resource limits of the gRPC server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 keepalive ping interval.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Time to wait for a keepalive ack before closing.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Time allowed for a TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Open connections accepted at once; more wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 32,
            max_message_bytes: 4 << 20,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 20_000,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/cutover-coordinator"),
            listen: "0.0.0.0:7443".parse().expect("valid"),
            metrics_listen: None,
            advertise_url: None,
            pki_dir: None,
            server_names: Vec::new(),
            host_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            host_cert_ttl: Duration::from_secs(24 * 3600),
            operator_cert_ttl: Duration::from_secs(30 * 24 * 3600),
            max_token_ttl: Duration::from_secs(7 * 24 * 3600),
            session_ticket_lifetime: Duration::from_secs(24 * 3600),
            limits: Limits::default(),
            retention: Retention::default(),
            notify: Notify::default(),
            store: None,
            store_password_file: None,
            store_ca_file: None,
            name: None,
            leader_lease: Duration::from_secs(3),
            environments: Default::default(),
        }
    }
}

const ENV_KEYS: &[&str] = &[
    "state_dir",
    "listen",
    "metrics_listen",
    "advertise_url",
    "pki_dir",
    "server_names",
    "host_timeout",
    "heartbeat_interval",
    "host_cert_ttl",
    "operator_cert_ttl",
    "max_token_ttl",
    "session_ticket_lifetime",
    "limits",
    "retention",
    "notify",
    "store",
    "store_password_file",
    "store_ca_file",
    "name",
    "leader_lease",
];

impl CoordinatorConfig {
    /// Loads and validates the config. `path` is `--config` when given
    /// (then it must exist), else [`DEFAULT_PATH`] if present.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (p, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let (cfg, origin): (Self, Origin) =
            config::load(&p, explicit, "CUTOVER_", ENV_KEYS, EXAMPLE)?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// Cross-field checks.
    pub fn validate(&self, origin: &Origin) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::invalid(
                origin,
                "heartbeat_interval",
                "expected a duration above zero",
            ));
        }
        if self.host_timeout < self.heartbeat_interval * 2 {
            return Err(ConfigError::invalid(
                origin,
                "host_timeout",
                format!(
                    "expected at least twice heartbeat_interval ({}), found {}",
                    humantime::format_duration(self.heartbeat_interval * 2),
                    humantime::format_duration(self.host_timeout)
                ),
            ));
        }
        if self.host_cert_ttl < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                origin,
                "host_cert_ttl",
                "expected at least 3s",
            ));
        }
        let tickets = self.session_ticket_lifetime;
        if !tickets.is_zero() && !(Duration::from_secs(60)..=MAX_TICKET_LIFETIME).contains(&tickets)
        {
            return Err(ConfigError::invalid(
                origin,
                "session_ticket_lifetime",
                format!(
                    "expected 0s (off) or between 1m and 7days (TLS 1.3's longest), found {}",
                    humantime::format_duration(tickets)
                ),
            ));
        }
        if self.limits.max_message_bytes < 64 * 1024 {
            return Err(ConfigError::invalid(
                origin,
                "limits.max_message_bytes",
                "expected at least 65536",
            ));
        }
        if self.limits.max_concurrent_streams == 0 || self.limits.max_connections == 0 {
            return Err(ConfigError::invalid(
                origin,
                "limits",
                "expected non-zero stream and connection limits",
            ));
        }
        for (name, env) in &self.environments {
            if let Err((i, why)) = cutover_common::windows::parse_all(&env.windows) {
                return Err(ConfigError::invalid(
                    origin,
                    &format!("environments.{name}.windows[{i}]"),
                    why,
                ));
            }
            for (i, f) in env.freezes.iter().enumerate() {
                if let Err(why) = f.span_ms() {
                    return Err(ConfigError::invalid(
                        origin,
                        &format!("environments.{name}.freezes[{i}]"),
                        why,
                    ));
                }
            }
        }
        for (i, url) in self.notify.webhooks.iter().enumerate() {
            if let Err(why) = crate::notify::check_url(url) {
                return Err(ConfigError::invalid(
                    origin,
                    &format!("notify.webhooks[{i}]"),
                    why,
                ));
            }
        }
        for (i, h) in self.notify.hooks.iter().enumerate() {
            let key = |k: &str| format!("notify.hooks[{i}].{k}");
            match (&h.url, &h.url_file) {
                (Some(url), None) => {
                    if let Err(why) = crate::notify::check_url(url) {
                        return Err(ConfigError::invalid(origin, &key("url"), why));
                    }
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(ConfigError::invalid(
                        origin,
                        &format!("notify.hooks[{i}]"),
                        "expected one of `url` or `url_file`, e.g. url_file = \"/etc/cutover/slack.url\"",
                    ));
                }
            }
            if let Some(e) = h
                .events
                .iter()
                .find(|e| !NOTIFY_EVENTS.contains(&e.as_str()))
            {
                return Err(ConfigError::invalid(
                    origin,
                    &key("events"),
                    format!(
                        "unknown event `{e}`: expected any of {}",
                        NOTIFY_EVENTS.join(", ")
                    ),
                ));
            }
        }
        if self.notify.timeout.is_zero() {
            return Err(ConfigError::invalid(
                origin,
                "notify.timeout",
                "expected a duration above zero",
            ));
        }
        match &self.store {
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::invalid(
                        origin,
                        "store",
                        format!(
                            "expected a postgres:// URL such as postgres://cutover@db.example:5432/cutover (or no `store` for the SQLite file in state_dir), found `{url}`"
                        ),
                    ));
                }
            }
            None => {
                for (key, set) in [
                    ("store_password_file", self.store_password_file.is_some()),
                    ("store_ca_file", self.store_ca_file.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::invalid(
                            origin,
                            key,
                            "only used with a PostgreSQL `store`, which is not set",
                        ));
                    }
                }
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.leader_lease) {
            return Err(ConfigError::invalid(
                origin,
                "leader_lease",
                format!(
                    "expected between 1s and 60s, e.g. 3s, found {}",
                    humantime::format_duration(self.leader_lease)
                ),
            ));
        }
        if let Some(url) = &self.advertise_url
            && !url.starts_with("https://")
        {
            return Err(ConfigError::invalid(
                origin,
                "advertise_url",
                format!("expected an https:// URL, found `{url}`"),
            ));
        }
        Ok(())
    }

    /// The PKI directory.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("pki"))
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("cutover.db")
    }

    /// Where the store is (reads the password file of a PostgreSQL one).
    pub fn store_location(&self) -> Result<crate::store::Location, crate::store::StoreError> {
        Ok(match &self.store {
            None => crate::store::Location::Sqlite(self.db_path()),
            Some(url) => crate::store::Location::Postgres(crate::store::PgTarget::new(
                url,
                self.store_password_file.as_deref(),
                self.store_ca_file.clone(),
            )?),
        })
    }

    /// This coordinator's name among several.
    pub fn member_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The URL to give agents and operators.
    pub fn advertised_url(&self, bound: SocketAddr) -> String {
        if let Some(u) = &self.advertise_url {
            return u.clone();
        }
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        if host.contains(':') {
            format!("https://[{host}]:{}", bound.port())
        } else {
            format!("https://{host}:{}", bound.port())
        }
    }
}
