//! What an agent needs to know to run one service: the host part of a
//! deployment spec. The coordinator sends it with `Stage` (as JSON inside
//! the protobuf message, so this type is the one definition) and the agent
//! keeps it with the staged release.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a new version replaces the running one on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SwapMode {
    /// New and old share the agent's listening sockets (systemd socket
    /// activation); the old stops only once the new is healthy.
    #[default]
    Handover,
    /// Each instance binds its own `SO_REUSEPORT` socket.
    Reuseport,
    /// Drain, stop, start: a gap on this host.
    Restart,
}

/// The whole host-side description of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub service: String,
    pub run: RunSpec,
    #[serde(default)]
    pub listen: Vec<ListenSpec>,
    #[serde(default)]
    pub swap: SwapSpec,
    #[serde(default)]
    pub probes: Probes,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub drain: DrainSpec,
    #[serde(default)]
    pub restart: RestartSpec,
    #[serde(default)]
    pub logs: LogSpec,
    /// The app's own Prometheus metrics, scraped from each instance for
    /// canary analysis. Left out of the JSON when unset, so agents that
    /// predate it still take specs without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<AppMetrics>,
}

/// Where and what to scrape of an app's own Prometheus metrics: a request
/// counter by status, and optionally a latency histogram. The agent
/// scrapes each instance itself (the connection accepted by that
/// instance, as for probes) from the moment it was first ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMetrics {
    /// A listener by name.
    #[serde(default)]
    pub listener: Option<String>,
    /// Or an explicit port.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "d_metrics_path")]
    pub path: String,
    /// A counter of requests (Prometheus text format), e.g.
    /// `http_requests_total`; a series' `status_label` tells its status.
    pub requests: String,
    #[serde(default = "d_status_label")]
    pub status_label: String,
    /// A histogram of request durations in seconds, e.g.
    /// `http_request_duration_seconds` (its `_bucket` series are read).
    #[serde(default)]
    pub latency: Option<String>,
    #[serde(with = "humantime_serde", default = "d_scrape_interval")]
    pub interval: Duration,
}

impl AppMetrics {
    /// Where the scrape connects.
    pub fn target(&self) -> Target {
        Target {
            listener: self.listener.clone(),
            port: self.port,
        }
    }
}

fn d_metrics_path() -> String {
    "/metrics".into()
}
fn d_status_label() -> String {
    "code".into()
}
fn d_scrape_interval() -> Duration {
    Duration::from_secs(1)
}

/// Whether `name` is a Prometheus metric or label name.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// How to start the service's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Program and arguments; a relative program is inside the release.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files of KEY=VALUE lines read on the host at start (secrets stay there).
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    /// User to run as (name or uid); default: the agent's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Working directory relative to the release (default: the release).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Where the instance's stdout and stderr go: `file` (one file per
    /// instance on the host, what `cutover logs` reads) or `journal` (the
    /// systemd journal, as the service's name: `journalctl -t SERVICE`).
    #[serde(default)]
    pub output: Output,
}

/// Where an instance's output goes (`[run] output`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    #[default]
    File,
    Journal,
}

/// A listening socket the agent holds for the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    /// Name passed in `LISTEN_FDNAMES`.
    pub name: String,
    pub address: SocketAddr,
}

/// Swap parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapSpec {
    #[serde(default)]
    pub mode: SwapMode,
    /// How long the new instance must stay healthy (from its first passing
    /// readiness) before the old one is stopped.
    #[serde(with = "humantime_serde", default = "d_min_ready")]
    pub min_ready: Duration,
    /// Time the old instance gets to drain after its stop signal.
    #[serde(with = "humantime_serde", default = "d_grace")]
    pub grace: Duration,
    /// Signal that asks an instance to stop.
    #[serde(default = "d_signal")]
    pub stop_signal: String,
    /// A new instance not ready within this is a failed swap.
    #[serde(with = "humantime_serde", default = "d_ready_timeout")]
    pub ready_timeout: Duration,
}

fn d_min_ready() -> Duration {
    Duration::from_secs(1)
}
fn d_grace() -> Duration {
    Duration::from_secs(30)
}
fn d_signal() -> String {
    "SIGTERM".into()
}
fn d_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for SwapSpec {
    fn default() -> Self {
        Self {
            mode: SwapMode::default(),
            min_ready: d_min_ready(),
            grace: d_grace(),
            stop_signal: d_signal(),
            ready_timeout: d_ready_timeout(),
        }
    }
}

/// Probes by role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    /// Must pass once before readiness and liveness start.
    #[serde(default)]
    pub startup: Option<Probe>,
    /// Decides when an instance may take traffic.
    #[serde(default)]
    pub readiness: Option<Probe>,
    /// Failing it restarts the instance (replacement first).
    #[serde(default)]
    pub liveness: Option<Probe>,
}

/// One probe: what to check and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[serde(flatten)]
    pub check: Check,
    #[serde(with = "humantime_serde", default)]
    pub initial_delay: Duration,
    #[serde(with = "humantime_serde", default = "d_interval")]
    pub interval: Duration,
    #[serde(with = "humantime_serde", default = "d_timeout")]
    pub timeout: Duration,
    #[serde(default = "d_one")]
    pub success_threshold: u32,
    #[serde(default = "d_three")]
    pub failure_threshold: u32,
}

fn d_interval() -> Duration {
    Duration::from_secs(1)
}
fn d_timeout() -> Duration {
    Duration::from_secs(1)
}
fn d_one() -> u32 {
    1
}
fn d_three() -> u32 {
    3
}

/// Where a network probe connects. Whatever the address, the agent counts
/// only connections that a process of the judged instance accepted (the
/// old instance beside it on a shared listener answers none of its
/// probes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A listener by name (its address, with 0.0.0.0 probed as 127.0.0.1).
    #[serde(default)]
    pub listener: Option<String>,
    /// Or an explicit port: on the address of the listener declaring it,
    /// else on 127.0.0.1.
    #[serde(default)]
    pub port: Option<u16>,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The instance sent `READY=1` on its notify socket.
    Notify {},
    /// An HTTP GET answered with a status in `[status_min, status_max]`
    /// (and containing `body` when given).
    Http {
        #[serde(flatten)]
        target: Target,
        #[serde(default = "d_path")]
        path: String,
        #[serde(default = "d_status_min")]
        status_min: u16,
        #[serde(default = "d_status_max")]
        status_max: u16,
        #[serde(default)]
        body: Option<String>,
    },
    /// A TCP connection opens.
    Tcp {
        #[serde(flatten)]
        target: Target,
    },
    /// A command exits 0 (run in the release directory).
    Exec { command: Vec<String> },
    /// grpc.health.v1 answers SERVING.
    Grpc {
        #[serde(flatten)]
        target: Target,
        #[serde(default)]
        service: String,
    },
}

fn d_path() -> String {
    "/".into()
}
fn d_status_min() -> u16 {
    200
}
fn d_status_max() -> u16 {
    399
}

/// Lifecycle hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default)]
    pub before_start: Option<Hook>,
    #[serde(default)]
    pub after_start: Option<Hook>,
    #[serde(default)]
    pub validate: Option<Hook>,
    #[serde(default)]
    pub pre_drain: Option<Hook>,
    #[serde(default)]
    pub post_drain: Option<Hook>,
}

/// A hook: a command run in the release directory with a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub command: Vec<String>,
    #[serde(with = "humantime_serde", default = "d_hook_timeout")]
    pub timeout: Duration,
}

fn d_hook_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Hooks {
    /// A hook by its name.
    pub fn get(&self, name: &str) -> Option<&Hook> {
        match name {
            "before_start" => self.before_start.as_ref(),
            "after_start" => self.after_start.as_ref(),
            "validate" => self.validate.as_ref(),
            "pre_drain" => self.pre_drain.as_ref(),
            "post_drain" => self.post_drain.as_ref(),
            _ => None,
        }
    }
}

/// Drain parameters: how long a drain waits, after the readiness
/// endpoint turned "down", before it goes on (stops the instance, runs
/// `post_drain`). See docs/load-balancers.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainSpec {
    /// What the drain waits for: the balancers that check the readiness
    /// endpoint to have taken the host out, or a fixed delay.
    #[serde(default)]
    pub wait_for: DrainWait,
    /// "Down" answers in a row each balancer must have had before it
    /// counts as having taken the host out (its `fall`; HAProxy's
    /// default is 3).
    #[serde(default = "d_fall")]
    pub balancer_fall: u32,
    /// The longest wait for balancers; then the drain goes on and says
    /// which did not confirm.
    #[serde(with = "humantime_serde", default = "d_balancer_timeout")]
    pub balancer_timeout: Duration,
    /// With `wait_for = "delay"`, or when no balancer checks the
    /// endpoint: the time between failing the readiness endpoint and
    /// going on.
    #[serde(with = "humantime_serde", default = "d_dereg")]
    pub deregistration_delay: Duration,
}

/// What a drain waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainWait {
    /// Every balancer seen checking the readiness endpoint was told
    /// "down" `balancer_fall` times in a row.
    #[default]
    Balancers,
    /// `deregistration_delay`, whatever the balancers do.
    Delay,
}

fn d_dereg() -> Duration {
    Duration::from_secs(5)
}

fn d_fall() -> u32 {
    3
}

fn d_balancer_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for DrainSpec {
    fn default() -> Self {
        Self {
            wait_for: DrainWait::default(),
            balancer_fall: d_fall(),
            balancer_timeout: d_balancer_timeout(),
            deregistration_delay: d_dereg(),
        }
    }
}

/// What to do when an instance exits by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    #[serde(default = "d_true")]
    pub on_failure: bool,
    #[serde(with = "humantime_serde", default = "d_backoff_initial")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde", default = "d_backoff_max")]
    pub backoff_max: Duration,
}

fn d_true() -> bool {
    true
}
fn d_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn d_backoff_max() -> Duration {
    Duration::from_secs(60)
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            on_failure: true,
            backoff_initial: d_backoff_initial(),
            backoff_max: d_backoff_max(),
        }
    }
}

/// Per-instance log files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Rotate an instance's log when it passes this size.
    #[serde(default = "d_log_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept.
    #[serde(default = "d_log_keep")]
    pub keep: u32,
}

fn d_log_bytes() -> u64 {
    10 << 20
}
fn d_log_keep() -> u32 {
    3
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            max_bytes: d_log_bytes(),
            keep: d_log_keep(),
        }
    }
}

/// A spec that cannot be run, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {expected}")]
pub struct SpecError {
    pub field: String,
    pub expected: String,
}

fn err(field: &str, expected: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        expected: expected.into(),
    }
}

/// Parses a service spec from TOML text (the format operators write).
pub fn parse_toml(text: &str) -> Result<ServiceSpec, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Signal names the agent accepts for `stop_signal`.
pub const SIGNALS: &[&str] = &[
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH",
];

/// Bounds of a service spec: settings past these mean nothing sensible
/// and would overflow the agent's clocks or disks, so `validate` refuses
/// them with the field's name.
pub mod limits {
    use std::time::Duration;

    /// Longest duration any host-side setting may have (probe periods,
    /// swap and hook timeouts, drain delays, restart backoff).
    pub const DURATION: Duration = Duration::from_secs(24 * 3600);
    /// Smallest and largest instance log before rotation.
    pub const LOG_BYTES: (u64, u64) = (4096, 1 << 40);
    /// Rotated logs kept.
    pub const LOG_KEEP: u32 = 1000;
    /// Probe thresholds.
    pub const THRESHOLD: u32 = 1_000_000;
    /// Listeners of one service.
    pub const LISTENERS: usize = 64;
    /// Words of a command line, and bytes of all of them.
    pub const COMMAND_WORDS: usize = 4096;
    pub const COMMAND_BYTES: usize = 128 * 1024;
    /// Environment variables and env files.
    pub const ENV_VARS: usize = 4096;
    pub const ENV_FILES: usize = 64;
    /// `drain.balancer_fall`.
    pub const BALANCER_FALL: u32 = 100;
}

fn check_duration(field: &str, d: std::time::Duration) -> Result<(), SpecError> {
    if d > limits::DURATION {
        return Err(err(
            field,
            format!(
                "expected at most {}, found {}",
                humantime::format_duration(limits::DURATION),
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(())
}

/// A command line: a program and arguments. A relative program is found
/// in the release, so it may not climb out of it.
fn check_command(field: &str, command: &[String]) -> Result<(), SpecError> {
    if command.is_empty() || command[0].is_empty() {
        return Err(err(field, "expected a program and its arguments"));
    }
    let bytes: usize = command.iter().map(String::len).sum();
    if command.len() > limits::COMMAND_WORDS || bytes > limits::COMMAND_BYTES {
        return Err(err(
            field,
            format!(
                "expected at most {} words and {} bytes, found {} and {bytes}",
                limits::COMMAND_WORDS,
                limits::COMMAND_BYTES,
                command.len()
            ),
        ));
    }
    if command.iter().any(|w| w.contains('\0')) {
        return Err(err(field, "a NUL byte cannot be passed to a program"));
    }
    check_in_release(field, &command[0])
}

/// A path inside the release (or an absolute program): no `..` that would
/// climb out of the release directory.
fn check_in_release(field: &str, p: &str) -> Result<(), SpecError> {
    let path = std::path::Path::new(p);
    if !path.is_absolute()
        && path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(err(
            field,
            format!(
                "`{p}` leaves the release directory: expected a path inside it (no `..`) or an absolute program"
            ),
        ));
    }
    Ok(())
}

/// A `run.user`: a user name or a numeric uid.
fn check_user(u: &str) -> Result<(), SpecError> {
    let name_ok = !u.is_empty()
        && u.len() <= 32
        && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    let uid_ok = !u.is_empty()
        && u.len() <= 10
        && u.chars().all(|c| c.is_ascii_digit())
        && u.parse::<u32>().is_ok();
    if name_ok || uid_ok {
        Ok(())
    } else {
        Err(err(
            "run.user",
            format!(
                "expected a user name (a-z, 0-9, _, -) or a numeric uid, found `{}`",
                crate::truncate_for_display(u, 40)
            ),
        ))
    }
}

impl ServiceSpec {
    /// Checks what serde cannot, and the bounds of [`limits`].
    pub fn validate(&self) -> Result<(), SpecError> {
        crate::identity::check_name(&self.service).map_err(|e| err("service", e.to_string()))?;
        self.validate_bounds()?;
        if self.run.command.is_empty() || self.run.command[0].is_empty() {
            return Err(err("run.command", "expected a program and its arguments"));
        }
        for k in self.run.env.keys() {
            if k.is_empty() || k.contains('=') || k.starts_with("LISTEN_") || k == "NOTIFY_SOCKET" {
                return Err(err(
                    &format!("run.env.{k}"),
                    "expected a variable name (LISTEN_*, NOTIFY_SOCKET are set by the agent)",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, l) in self.listen.iter().enumerate() {
            if l.name.is_empty() || l.name.contains(':') || !names.insert(&l.name) {
                return Err(err(
                    &format!("listen[{i}].name"),
                    "expected a unique name without `:`",
                ));
            }
        }
        if !SIGNALS.contains(&self.swap.stop_signal.as_str()) {
            return Err(err(
                "swap.stop_signal",
                format!("expected one of {}", SIGNALS.join(", ")),
            ));
        }
        if self.swap.mode != SwapMode::Restart
            && self.listen.is_empty()
            && self.swap.mode == SwapMode::Reuseport
        {
            return Err(err("listen", "reuseport mode needs at least one listener"));
        }
        for (role, p) in [
            ("startup", &self.probes.startup),
            ("readiness", &self.probes.readiness),
            ("liveness", &self.probes.liveness),
        ] {
            let Some(p) = p else { continue };
            let f = |k: &str| format!("probes.{role}.{k}");
            if p.interval.is_zero() {
                return Err(err(&f("interval"), "expected a duration above zero"));
            }
            if p.timeout.is_zero() {
                return Err(err(&f("timeout"), "expected a duration above zero"));
            }
            if p.success_threshold == 0 || p.failure_threshold == 0 {
                return Err(err(
                    &f("failure_threshold"),
                    "expected thresholds of at least 1",
                ));
            }
            match &p.check {
                Check::Http {
                    target,
                    status_min,
                    status_max,
                    path,
                    ..
                } => {
                    self.check_target(target, &f("http.listener"))?;
                    if status_min > status_max || *status_min < 100 || *status_max > 599 {
                        return Err(err(
                            &f("http.status_min"),
                            "expected 100 <= status_min <= status_max <= 599",
                        ));
                    }
                    if !path.starts_with('/') {
                        return Err(err(&f("http.path"), "expected a path starting with /"));
                    }
                }
                Check::Tcp { target } => self.check_target(target, &f("tcp.listener"))?,
                Check::Grpc { target, .. } => self.check_target(target, &f("grpc.listener"))?,
                Check::Exec { command } if command.is_empty() => {
                    return Err(err(
                        &f("exec.command"),
                        "expected a program and its arguments",
                    ));
                }
                Check::Exec { .. } | Check::Notify {} => {}
            }
        }
        for name in [
            "before_start",
            "after_start",
            "validate",
            "pre_drain",
            "post_drain",
        ] {
            if let Some(h) = self.hooks.get(name)
                && h.command.is_empty()
            {
                return Err(err(
                    &format!("hooks.{name}.command"),
                    "expected a program and its arguments",
                ));
            }
        }
        if let Some(m) = &self.metrics {
            self.check_target(&m.target(), "metrics.listener")?;
            if !m.path.starts_with('/') {
                return Err(err("metrics.path", "expected a path starting with /"));
            }
            for (field, name) in [
                ("metrics.requests", Some(&m.requests)),
                ("metrics.status_label", Some(&m.status_label)),
                ("metrics.latency", m.latency.as_ref()),
            ] {
                if let Some(n) = name
                    && !is_metric_name(n)
                {
                    return Err(err(
                        field,
                        format!("expected a Prometheus metric name, found `{n}`"),
                    ));
                }
            }
            if m.interval.is_zero() {
                return Err(err("metrics.interval", "expected a duration above zero"));
            }
        }
        if self.restart.backoff_initial.is_zero()
            || self.restart.backoff_max < self.restart.backoff_initial
        {
            return Err(err(
                "restart.backoff_max",
                "expected backoff_initial > 0 and backoff_max >= backoff_initial",
            ));
        }
        Ok(())
    }

    /// Sizes, counts, durations and paths within [`limits`].
    fn validate_bounds(&self) -> Result<(), SpecError> {
        check_command("run.command", &self.run.command)?;
        if self.run.env.len() > limits::ENV_VARS {
            return Err(err(
                "run.env",
                format!("expected at most {} variables", limits::ENV_VARS),
            ));
        }
        if self.run.env_files.len() > limits::ENV_FILES {
            return Err(err(
                "run.env_files",
                format!("expected at most {} files", limits::ENV_FILES),
            ));
        }
        for (i, f) in self.run.env_files.iter().enumerate() {
            if !f.is_absolute() {
                return Err(err(
                    &format!("run.env_files[{i}]"),
                    format!(
                        "expected an absolute path on the host, found `{}`",
                        f.display()
                    ),
                ));
            }
        }
        if let Some(u) = &self.run.user {
            check_user(u)?;
        }
        if let Some(w) = &self.run.working_dir {
            if w.is_empty() || std::path::Path::new(w).is_absolute() {
                return Err(err(
                    "run.working_dir",
                    format!(
                        "expected a directory inside the release (relative, no `..`), found `{w}`"
                    ),
                ));
            }
            check_in_release("run.working_dir", w)?;
        }
        if self.listen.len() > limits::LISTENERS {
            return Err(err(
                "listen",
                format!("expected at most {} listeners", limits::LISTENERS),
            ));
        }
        check_duration("swap.min_ready", self.swap.min_ready)?;
        check_duration("swap.grace", self.swap.grace)?;
        check_duration("swap.ready_timeout", self.swap.ready_timeout)?;
        if self.swap.ready_timeout.is_zero() {
            return Err(err("swap.ready_timeout", "expected a duration above zero"));
        }
        check_duration(
            "drain.deregistration_delay",
            self.drain.deregistration_delay,
        )?;
        check_duration("drain.balancer_timeout", self.drain.balancer_timeout)?;
        if !(1..=limits::BALANCER_FALL).contains(&self.drain.balancer_fall) {
            return Err(err(
                "drain.balancer_fall",
                format!(
                    "expected 1 to {}, found {}",
                    limits::BALANCER_FALL,
                    self.drain.balancer_fall
                ),
            ));
        }
        check_duration("restart.backoff_initial", self.restart.backoff_initial)?;
        check_duration("restart.backoff_max", self.restart.backoff_max)?;
        for (role, p) in [
            ("startup", &self.probes.startup),
            ("readiness", &self.probes.readiness),
            ("liveness", &self.probes.liveness),
        ] {
            let Some(p) = p else { continue };
            let f = |k: &str| format!("probes.{role}.{k}");
            check_duration(&f("initial_delay"), p.initial_delay)?;
            check_duration(&f("interval"), p.interval)?;
            check_duration(&f("timeout"), p.timeout)?;
            for (k, n) in [
                ("success_threshold", p.success_threshold),
                ("failure_threshold", p.failure_threshold),
            ] {
                if n > limits::THRESHOLD {
                    return Err(err(
                        &f(k),
                        format!("expected at most {}, found {n}", limits::THRESHOLD),
                    ));
                }
            }
            if let Check::Exec { command } = &p.check
                && !command.is_empty()
            {
                check_command(&f("exec.command"), command)?;
            }
        }
        for name in [
            "before_start",
            "after_start",
            "validate",
            "pre_drain",
            "post_drain",
        ] {
            if let Some(h) = self.hooks.get(name) {
                check_command(&format!("hooks.{name}.command"), &h.command)?;
                check_duration(&format!("hooks.{name}.timeout"), h.timeout)?;
                if h.timeout.is_zero() {
                    return Err(err(
                        &format!("hooks.{name}.timeout"),
                        "expected a duration above zero",
                    ));
                }
            }
        }
        if let Some(m) = &self.metrics {
            check_duration("metrics.interval", m.interval)?;
        }
        let (lo, hi) = limits::LOG_BYTES;
        if !(lo..=hi).contains(&self.logs.max_bytes) {
            return Err(err(
                "logs.max_bytes",
                format!(
                    "expected between {lo} and {hi} bytes, found {}",
                    self.logs.max_bytes
                ),
            ));
        }
        if self.logs.keep > limits::LOG_KEEP {
            return Err(err(
                "logs.keep",
                format!(
                    "expected at most {}, found {}",
                    limits::LOG_KEEP,
                    self.logs.keep
                ),
            ));
        }
        Ok(())
    }

    fn check_target(&self, t: &Target, field: &str) -> Result<(), SpecError> {
        match (&t.listener, t.port) {
            (Some(name), None) => {
                if self.listen.iter().any(|l| &l.name == name) {
                    Ok(())
                } else {
                    Err(err(field, format!("no listener named `{name}`")))
                }
            }
            (None, Some(_)) => Ok(()),
            _ => Err(err(field, "expected exactly one of `listener` or `port`")),
        }
    }

    /// Binds listeners declared on the unspecified address (`0.0.0.0` or
    /// `::`, of the same family) to `ip` instead: for a host whose services
    /// must listen on one address of several (the agent's `service_ip`).
    pub fn bind_unspecified_to(&mut self, ip: std::net::IpAddr) {
        for l in &mut self.listen {
            if l.address.ip().is_unspecified() && l.address.is_ipv4() == ip.is_ipv4() {
                l.address.set_ip(ip);
            }
        }
    }

    /// The address a probe target reaches. A `port` that a listener
    /// declares goes to that listener's address; any other port to
    /// 127.0.0.1.
    pub fn target_addr(&self, t: &Target) -> Option<SocketAddr> {
        if let Some(p) = t.port {
            let own = self
                .listen
                .iter()
                .find(|l| l.address.port() == p && !l.address.ip().is_unspecified());
            return Some(match own {
                Some(l) => l.address,
                None => SocketAddr::from(([127, 0, 0, 1], p)),
            });
        }
        let l = self
            .listen
            .iter()
            .find(|l| Some(&l.name) == t.listener.as_ref())?;
        let mut a = l.address;
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> ServiceSpec {
        toml::from_str(toml_text).unwrap()
    }

    const BASE: &str = r#"
service = "web"
[run]
command = ["bin/web"]
[[listen]]
name = "http"
address = "0.0.0.0:8080"
"#;

    #[test]
    fn a_minimal_spec_gets_sensible_defaults() {
        let s = spec(BASE);
        s.validate().unwrap();
        assert_eq!(s.swap.mode, SwapMode::Handover);
        assert_eq!(s.swap.stop_signal, "SIGTERM");
        assert_eq!(s.drain.deregistration_delay, Duration::from_secs(5));
    }

    #[test]
    fn probes_parse_with_kubernetes_style_parameters() {
        let s = spec(&format!(
            "{BASE}\n[probes.readiness]\nhttp = {{ listener = \"http\", path = \"/healthz\" }}\ninterval = \"200ms\"\nfailure_threshold = 2\n"
        ));
        s.validate().unwrap();
        let p = s.probes.readiness.clone().unwrap();
        assert_eq!(p.interval, Duration::from_millis(200));
        assert!(matches!(p.check, Check::Http { ref path, .. } if path == "/healthz"));
        assert_eq!(
            s.target_addr(&Target {
                listener: Some("http".into()),
                port: None
            }),
            Some("127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn a_host_service_ip_binds_unspecified_listeners_and_probes_follow() {
        let mut s = spec(BASE);
        s.listen.push(ListenSpec {
            name: "admin".into(),
            address: "127.0.0.1:9000".parse().unwrap(),
        });
        s.bind_unspecified_to("198.18.4.12".parse().unwrap());
        assert_eq!(s.listen[0].address, "198.18.4.12:8080".parse().unwrap());
        // Already specific: left alone.
        assert_eq!(s.listen[1].address, "127.0.0.1:9000".parse().unwrap());
        let port = |p| Target {
            listener: None,
            port: Some(p),
        };
        assert_eq!(
            s.target_addr(&port(8080)),
            Some("198.18.4.12:8080".parse().unwrap())
        );
        assert_eq!(
            s.target_addr(&port(7000)),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        // An IPv6 address leaves IPv4 listeners alone.
        let mut s = spec(BASE);
        s.bind_unspecified_to("::1".parse().unwrap());
        assert_eq!(s.listen[0].address, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn a_probe_aimed_at_an_unknown_listener_is_refused_by_field() {
        let s = spec(&format!(
            "{BASE}\n[probes.liveness]\ntcp = {{ listener = \"admin\" }}\n"
        ));
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "probes.liveness.tcp.listener");
    }

    #[test]
    fn reserved_environment_names_are_refused() {
        let mut s = spec(BASE);
        s.run.env.insert("LISTEN_FDS".into(), "9".into());
        assert_eq!(s.validate().unwrap_err().field, "run.env.LISTEN_FDS");
    }

    #[test]
    fn an_unknown_stop_signal_is_refused() {
        let mut s = spec(BASE);
        s.swap.stop_signal = "SIGNOPE".into();
        assert_eq!(s.validate().unwrap_err().field, "swap.stop_signal");
    }
}
