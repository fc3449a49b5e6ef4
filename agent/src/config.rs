//! The agent's config (`agent.toml`, `CUTOVER_AGENT_*` variables).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_common::config::{self, ConfigError, Origin};
use cutover_common::labels::{self, Labels};
use serde::{Deserialize, Serialize};

/// Default config file location.
pub const DEFAULT_PATH: &str = "/etc/cutover/agent.toml";

/// Everything `cutover-agent run` needs.
/// The shipped example config (every key, with a valid value): a type
/// error in a config is answered with its line for the key.
const EXAMPLE: &str = include_str!("../../packaging/examples/agent.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Identity, journal, releases and service state.
    pub state_dir: PathBuf,
    /// Coordinator URL; default: the one used at enrollment.
    pub coordinator: Option<String>,
    /// Several coordinators sharing one PostgreSQL store (high
    /// availability), instead of `coordinator`: tried in order; a standby
    /// names the leader, which is tried next.
    #[serde(default)]
    pub coordinators: Vec<String>,
    /// Labels this host reports. Labels bound by the join token win.
    pub labels: Labels,
    /// First delay before reconnecting after a lost session.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Longest delay between reconnect attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Random spread of reconnect delays, as a fraction (0 to 1).
    pub reconnect_jitter: f64,
    /// Time allowed for the TCP connection to the coordinator (the TLS
    /// handshake after it has 30 s: see `tls::ChannelOptions`).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Renew the host certificate at this fraction of its lifetime.
    pub renew_at: f64,
    /// Where the readiness endpoint for load balancers listens
    /// (`GET /ready/<service>`); none when unset.
    pub readiness_listen: Option<std::net::SocketAddr>,
    /// The address services listen on when their spec says `0.0.0.0` (or
    /// `::`): for hosts with several addresses, and for several test hosts
    /// sharing one machine. Unset: the spec's address as written.
    pub service_ip: Option<std::net::IpAddr>,
    /// journald's stream socket, for services whose `[run] output` is
    /// `journal`; default /run/systemd/journal/stdout.
    pub journal_socket: Option<PathBuf>,
    /// What deployments may do on this host (`[policy]`).
    #[serde(default)]
    pub policy: crate::policy::Policy,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/cutover/agent"),
            coordinator: None,
            coordinators: Vec::new(),
            labels: Labels::new(),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            reconnect_jitter: 0.2,
            connect_timeout: Duration::from_secs(5),
            renew_at: 2.0 / 3.0,
            readiness_listen: None,
            service_ip: None,
            journal_socket: None,
            policy: Default::default(),
        }
    }
}

const ENV_KEYS: &[&str] = &[
    "state_dir",
    "coordinator",
    "coordinators",
    "labels",
    "reconnect_initial",
    "reconnect_max",
    "reconnect_jitter",
    "connect_timeout",
    "renew_at",
    "readiness_listen",
    "service_ip",
    "journal_socket",
];

impl AgentConfig {
    /// Loads and validates. `path` is `--config` when given (then it must
    /// exist), else [`DEFAULT_PATH`] if present.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (p, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let (cfg, origin): (Self, Origin) =
            config::load(&p, explicit, "CUTOVER_AGENT_", ENV_KEYS, EXAMPLE)?;
        cfg.validate(&origin)?;
        Ok(cfg)
    }

    /// Cross-field checks.
    pub fn validate(&self, origin: &Origin) -> Result<(), ConfigError> {
        if let Err(e) = labels::check_all(&self.labels) {
            return Err(ConfigError::invalid(origin, "labels", e));
        }
        if !(0.0..=1.0).contains(&self.reconnect_jitter) {
            return Err(ConfigError::invalid(
                origin,
                "reconnect_jitter",
                format!(
                    "expected a fraction between 0 and 1, found {}",
                    self.reconnect_jitter
                ),
            ));
        }
        if !(0.1..=0.95).contains(&self.renew_at) {
            return Err(ConfigError::invalid(
                origin,
                "renew_at",
                format!(
                    "expected a fraction between 0.1 and 0.95, found {}",
                    self.renew_at
                ),
            ));
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return Err(ConfigError::invalid(
                origin,
                "reconnect_max",
                "expected reconnect_initial above zero and reconnect_max at least reconnect_initial",
            ));
        }
        if let Err(e) = self.policy.validate() {
            return Err(ConfigError::invalid(origin, "policy", e));
        }
        if let Some(url) = &self.coordinator
            && !url.starts_with("https://")
        {
            return Err(ConfigError::invalid(
                origin,
                "coordinator",
                format!("expected an https:// URL, found `{url}`"),
            ));
        }
        if self.coordinator.is_some() && !self.coordinators.is_empty() {
            return Err(ConfigError::invalid(
                origin,
                "coordinators",
                "set either `coordinator` (one) or `coordinators` (several), not both",
            ));
        }
        for (i, url) in self.coordinators.iter().enumerate() {
            if !url.starts_with("https://") {
                return Err(ConfigError::invalid(
                    origin,
                    &format!("coordinators[{i}]"),
                    format!(
                        "expected an https:// URL such as https://coordinator-2:7443, found `{url}`"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The coordinators to reach, in order: `coordinators`, else
    /// `coordinator`, else the one the host enrolled with.
    pub fn coordinator_urls(&self, enrolled_with: &str) -> Vec<String> {
        if !self.coordinators.is_empty() {
            return self.coordinators.clone();
        }
        // Enrolled with several (a comma-separated list): all of them.
        let one = self
            .coordinator
            .clone()
            .unwrap_or(enrolled_with.to_string());
        let urls: Vec<String> = one
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() { vec![one] } else { urls }
    }

    /// Where the host identity lives.
    pub fn identity_dir(&self) -> PathBuf {
        self.state_dir.join("identity")
    }

    /// Makes the state directory, or fixes its mode: 0711, so that an app
    /// running as its own `run.user` reaches its release directory below
    /// it (without listing it); the identity and the journal below are
    /// 0700. Missing parents are made 0755. (Made as a side effect of the
    /// identity's 0700 directory, it used to be 0700: every app with a
    /// `run.user` failed to start with "Permission denied".)
    pub fn prepare_state_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = &self.state_dir;
        if let Some(parent) = dir.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
        // The umask may have taken the others' search bit; a directory
        // made 0700 by an older agent is fixed. A wider mode an operator
        // chose is left alone.
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o711))?;
            tracing::info!(dir = %dir.display(), from = format!("{mode:o}"), to = format!("{:o}", mode | 0o711), "the state directory's mode fixed: apps running as their own users reach their releases below it");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_state_directory_lets_apps_through_to_their_releases_but_not_list_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AgentConfig {
            state_dir: dir.path().join("lib/cutover/agent"),
            ..Default::default()
        };
        cfg.prepare_state_dir().unwrap();
        assert_eq!(mode(&cfg.state_dir), 0o711);
        assert_eq!(mode(&dir.path().join("lib/cutover")), 0o755);
        // The identity's 0700 directory does not change it.
        cutover_common::fsutil::create_dir_with_mode(&cfg.identity_dir(), 0o700).unwrap();
        assert_eq!(mode(&cfg.state_dir), 0o711);
        // Made 0700 by an older agent's enrolment: fixed.
        std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        cfg.prepare_state_dir().unwrap();
        assert_eq!(mode(&cfg.state_dir), 0o711);
        // Wider, as an operator chose: left.
        std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        cfg.prepare_state_dir().unwrap();
        assert_eq!(mode(&cfg.state_dir), 0o755);
    }
}
