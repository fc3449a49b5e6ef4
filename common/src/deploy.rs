//! The deployment spec operators write (TOML): what to deploy, how to run
//! it on each host, and how to roll it out across the fleet. `cutover
//! validate` checks it; every error names the file, the line, the field
//! path and what was expected.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::Selector;
use crate::service::{
    AppMetrics, DrainSpec, Hooks, ListenSpec, LogSpec, Probes, RestartSpec, RunSpec, ServiceSpec,
    SwapSpec,
};

/// Bounds of a deployment spec beyond the host-side ones
/// ([`crate::service::limits`]).
pub mod limits {
    use std::time::Duration;

    /// Longest deadline, pause or keep time of a rollout.
    pub const DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Longest time one Prometheus query may take.
    pub const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
    /// Largest artifact a spec may allow (1 TiB).
    pub const ARTIFACT_BYTES: u64 = 1 << 40;
    /// Longest version string.
    pub const VERSION_BYTES: usize = 128;
}

/// A version: what `--version` or `version =` gives, shown everywhere and
/// part of release ids. Printable, no spaces or slashes, not empty.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= limits::VERSION_BYTES
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected 1 to {} of a-z, A-Z, 0-9 and . - _ + ~, found \"{}\"",
            limits::VERSION_BYTES,
            crate::truncate_for_display(v, 40)
        ))
    }
}

/// Checks an artifact URL and checksum given to a deployment (in a spec,
/// or overriding it on the command line): what was wrong, or the checksum
/// as 64 lowercase hex digits.
pub fn check_artifact(url: &str, sha256: &str) -> Result<String, (&'static str, String)> {
    if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("file://")) {
        return Err((
            "artifact.url",
            format!(
                "expected an http://, https:// or file:// URL, found \"{}\"",
                crate::truncate_for_display(url, 200)
            ),
        ));
    }
    if url.len() > 4096 || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err((
            "artifact.url",
            "expected a URL of at most 4096 characters, without spaces or control characters"
                .into(),
        ));
    }
    let h = sha256.trim();
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(("artifact.sha256", "expected 64 hex digits".into()));
    }
    Ok(h.to_ascii_lowercase())
}

/// A count of hosts or a percentage of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    /// The number of hosts out of `total` (a percentage rounds down, but a
    /// non-zero percentage of a non-empty fleet is at least one host).
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => (n as usize).min(total),
            Amount::Percent(p) => {
                let n = total * p as usize / 100;
                if n == 0 && p > 0 && total > 0 { 1 } else { n }
            }
        }
    }

    /// Like [`Amount::of`] but rounding a percentage down to possibly zero
    /// (for failure budgets: "10%" of 5 hosts tolerates no failure).
    pub fn floor_of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => total * p as usize / 100,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u32(*n),
            Amount::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host count like 2 or a percentage like \"25%\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                u32::try_from(v).map(Amount::Count).map_err(|_| {
                    E::custom(format!("expected a host count of 0 or more, found {v}"))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                u32::try_from(v)
                    .map(Amount::Count)
                    .map_err(|_| E::custom("host count too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                let t = v.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let p: u32 = p.trim().parse().map_err(|_| {
                        E::custom(format!("expected a percentage like \"25%\", found \"{v}\""))
                    })?;
                    if p > 100 {
                        return Err(E::custom(format!(
                            "expected a percentage between 0% and 100%, found \"{v}\""
                        )));
                    }
                    Ok(Amount::Percent(p))
                } else {
                    t.parse()
                        .map(Amount::Count)
                        .map_err(|_| E::custom(format!("expected a host count like 2 or a percentage like \"25%\", found \"{v}\"")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// How to roll out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Drain and stop everywhere, then start the new version everywhere.
    Recreate,
    /// Stage everywhere, then activate in batches.
    #[default]
    Rolling,
    /// Ordered steps judged against baseline hosts.
    Canary,
    /// Bring up the idle group, switch, keep the old group.
    BlueGreen,
}

/// A canary step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    pub hosts: Amount,
    /// A duration, or "manual" to wait for `cutover promote`.
    #[serde(default)]
    pub pause: Option<String>,
    #[serde(default)]
    pub analysis: bool,
}

/// The `[strategy]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    #[serde(default)]
    pub kind: StrategyKind,
    /// Hosts out of service at once.
    #[serde(default = "d_max_unavailable")]
    pub max_unavailable: Amount,
    /// Cap on hosts changed at once (default: no cap beyond max_unavailable).
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// A host not healthy within this after its swap started has failed.
    #[serde(with = "humantime_serde", default = "d_healthy_deadline")]
    pub healthy_deadline: Duration,
    /// The whole rollout must finish within this, or it rolls back.
    #[serde(with = "humantime_serde", default = "d_progress_deadline")]
    pub progress_deadline: Duration,
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Blue/green: the host label that says which group a host is in.
    #[serde(default = "d_group_label")]
    pub group_label: String,
    /// Blue/green: the two groups, by label value.
    #[serde(default = "d_groups")]
    pub groups: Vec<String>,
    /// Blue/green: how long switching back to the old group stays possible.
    #[serde(with = "humantime_serde", default = "d_keep_old")]
    pub keep_old: Duration,
    /// Blue/green: the command that moves traffic to the new group, run on
    /// the coordinator with CUTOVER_LIVE_GROUP, CUTOVER_OLD_GROUP,
    /// CUTOVER_HOSTS, CUTOVER_SERVICE and CUTOVER_VERSION set.
    #[serde(default)]
    pub switch: Option<crate::service::Hook>,
}

fn d_group_label() -> String {
    "color".into()
}
fn d_groups() -> Vec<String> {
    vec!["blue".into(), "green".into()]
}
fn d_keep_old() -> Duration {
    Duration::from_secs(3600)
}

fn d_max_unavailable() -> Amount {
    Amount::Percent(25)
}
fn d_healthy_deadline() -> Duration {
    Duration::from_secs(120)
}
fn d_progress_deadline() -> Duration {
    Duration::from_secs(900)
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            kind: StrategyKind::default(),
            max_unavailable: d_max_unavailable(),
            max_parallel: None,
            healthy_deadline: d_healthy_deadline(),
            progress_deadline: d_progress_deadline(),
            steps: Vec::new(),
            group_label: d_group_label(),
            groups: d_groups(),
            keep_old: d_keep_old(),
            switch: None,
        }
    }
}

/// The `[analysis]` table: data for canary analysis beyond what the
/// agents report (their probes and the apps' own metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// An existing Prometheus server the coordinator queries.
    #[serde(default)]
    pub prometheus: Option<PrometheusSource>,
}

/// Queries to a Prometheus server, each run for the canary hosts and for
/// the baseline hosts over the step's bake, in the spirit of Argo
/// Rollouts' AnalysisTemplate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    /// Base URL (`http://prometheus:9090`); `/api/v1/query` is added.
    pub url: String,
    /// Time one query may take.
    #[serde(with = "humantime_serde", default = "d_query_timeout")]
    pub timeout: Duration,
    pub queries: Vec<PromQuery>,
}

fn d_query_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One PromQL query whose value must not be higher on the canaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromQuery {
    /// Names the metric in verdicts (`prometheus:NAME`).
    pub name: String,
    /// PromQL giving one number, with `{{hosts}}` (a regex matching the
    /// group's host ids), `{{release}}` (the group's release ids, as a
    /// regex) and `{{window}}` (the time since the bake began, e.g. `8s`).
    pub query: String,
    /// How much higher than the baseline's the canaries' value may be.
    #[serde(default)]
    pub max_increase: f64,
}

/// The `[rollback]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackPolicy {
    #[serde(default = "d_true")]
    pub auto: bool,
    /// Failed hosts tolerated before rolling back (count or percent).
    #[serde(default = "d_max_failed")]
    pub max_failed: Amount,
}

fn d_true() -> bool {
    true
}
fn d_max_failed() -> Amount {
    Amount::Count(0)
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self {
            auto: true,
            max_failed: d_max_failed(),
        }
    }
}

/// The `[artifact]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub url: String,
    pub sha256: String,
    /// Largest artifact accepted, in bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// The `[targets]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Label selector, e.g. "role=web,zone!=b".
    pub selector: String,
    /// Only hosts labelled `environment=<this>`.
    #[serde(default)]
    pub environment: Option<String>,
    /// The promotion gate: this version, with this very artifact, must
    /// have succeeded in each of these environments first (e.g.
    /// `["staging"]` for production).
    #[serde(default)]
    pub requires_success_in: Vec<String>,
    /// Also deploy to hosts where an operator drained the service: a
    /// drained instance is swapped and stays drained, one stopped by
    /// `drain --stop` gets the release without being started. Otherwise
    /// those hosts are skipped and named (`cutover deploy
    /// --include-drained` sets this).
    #[serde(default)]
    pub include_drained: bool,
    /// A person must approve the deployment (`cutover approve ID`, an
    /// operator other than the one who submitted it) before any host
    /// changes: it stages everywhere, then waits.
    #[serde(default)]
    pub approval: bool,
    /// When a deployment may start, in UTC (`"mon-fri 09:00-17:00"`);
    /// empty: any time. Rollbacks are never held. `cutover deploy
    /// --outside-window REASON` starts one anyway (audited).
    #[serde(default)]
    pub windows: Vec<String>,
}

/// A whole deployment spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    pub service: String,
    /// Usually given on the command line (`--version`).
    #[serde(default)]
    pub version: Option<String>,
    /// Usually given on the command line (`--artifact`, `--sha256`).
    #[serde(default)]
    pub artifact: Option<ArtifactSpec>,
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
    #[serde(default)]
    pub metrics: Option<AppMetrics>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub rollback: RollbackPolicy,
    #[serde(default)]
    pub analysis: AnalysisSpec,
    pub targets: Targets,
}

/// A spec error: where, which field, what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub expected: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.expected),
            (0, false) => write!(f, "{}: `{}`: {}", self.file, self.field, self.expected),
            (l, true) => write!(f, "{}:{}:{}: {}", self.file, l, self.column, self.expected),
            (l, false) => write!(
                f,
                "{}:{}:{}: `{}`: {}",
                self.file, l, self.column, self.field, self.expected
            ),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// Probe check tables (`http = { ... }`) are flattened into their probe,
/// where serde cannot refuse unknown keys: a typo such as `pth` would be
/// ignored silently. They are checked here, on the raw document.
fn unknown_check_keys(text: &str) -> Result<(), (String, String)> {
    const TARGET: &[&str] = &["listener", "port"];
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let Some(probes) = doc.get("probes").and_then(|p| p.as_table()) else {
        return Ok(());
    };
    for (role, probe) in probes {
        let Some(probe) = probe.as_table() else {
            continue;
        };
        for (kind, allowed) in [
            ("http", &["path", "status_min", "status_max", "body"][..]),
            ("tcp", &[][..]),
            ("grpc", &["service"][..]),
            ("exec", &["command"][..]),
            ("notify", &[][..]),
        ] {
            let Some(t) = probe.get(kind).and_then(|t| t.as_table()) else {
                continue;
            };
            for k in t.keys() {
                let ok = allowed.contains(&k.as_str())
                    || (kind != "exec" && kind != "notify" && TARGET.contains(&k.as_str()));
                if !ok {
                    let mut expected: Vec<&str> = allowed.to_vec();
                    if kind != "exec" && kind != "notify" {
                        expected.extend(TARGET);
                    }
                    return Err((
                        format!("probes.{role}.{kind}"),
                        format!(
                            "unknown field `{k}`, expected {}",
                            if expected.is_empty() {
                                "none".to_string()
                            } else {
                                format!("one of `{}`", expected.join("`, `"))
                            }
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The span of a dotted key path in the document (for cross-field errors).
fn span_of(text: &str, path: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let name = part.split('[').next().unwrap_or(part);
        let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        if i + 1 == parts.len() {
            return Some(k.span());
        }
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return Some(k.span()),
        }
    }
    None
}

const SECRET_HINTS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "PRIVATE_KEY",
    "API_KEY",
    "CREDENTIAL",
];

impl DeploySpec {
    /// Parses and validates a spec; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<DeploySpec, SpecError> {
        let err = |span: Option<std::ops::Range<usize>>, field: String, expected: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            SpecError {
                file: file.into(),
                line,
                column,
                field,
                expected,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| err(e.span(), String::new(), e.message().to_string()))?;
        let spec: DeploySpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." { String::new() } else { path };
            err(inner.span(), field, inner.message().to_string())
        })?;
        if let Err((field, expected)) = unknown_check_keys(text).and_then(|_| spec.check()) {
            return Err(err(span_of(text, &field), field, expected));
        }
        let mut spec = spec;
        // One spelling per checksum (`sha256:` prefix, upper case): the same
        // artifact gets the same release id however it was written.
        if let Some(a) = &mut spec.artifact
            && let Ok(h) = check_artifact(&a.url, &a.sha256)
        {
            a.sha256 = h;
        }
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<DeploySpec, SpecError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            expected: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &name)
    }

    /// The host part, as agents receive it.
    pub fn service_spec(&self) -> ServiceSpec {
        ServiceSpec {
            service: self.service.clone(),
            run: self.run.clone(),
            listen: self.listen.clone(),
            swap: self.swap.clone(),
            probes: self.probes.clone(),
            hooks: self.hooks.clone(),
            drain: self.drain.clone(),
            restart: self.restart.clone(),
            logs: self.logs.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Cross-field checks: (field path, what was expected).
    fn check(&self) -> Result<(), (String, String)> {
        let e = |f: &str, m: String| Err((f.to_string(), m));
        if let Some(p) = &self.analysis.prometheus {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return e(
                    "analysis.prometheus.url",
                    format!("expected an http:// or https:// URL, found `{}`", p.url),
                );
            }
            if p.timeout.is_zero() {
                return e(
                    "analysis.prometheus.timeout",
                    "expected a duration above zero".into(),
                );
            }
            if p.queries.is_empty() {
                return e(
                    "analysis.prometheus.queries",
                    "expected at least one query".into(),
                );
            }
            for (i, q) in p.queries.iter().enumerate() {
                let f = |k: &str| format!("analysis.prometheus.queries[{i}].{k}");
                if q.name.is_empty() || p.queries[..i].iter().any(|o| o.name == q.name) {
                    return e(
                        &f("name"),
                        format!("expected a unique name, found `{}`", q.name),
                    );
                }
                if !q.query.contains("{{hosts}}") {
                    return e(
                        &f("query"),
                        "expected `{{hosts}}` in the query, to select the canaries and the baseline".into(),
                    );
                }
                if !q.max_increase.is_finite() || q.max_increase < 0.0 {
                    return e(&f("max_increase"), "expected a number of at least 0".into());
                }
            }
        }
        self.service_spec()
            .validate()
            .map_err(|se| (se.field, se.expected))?;
        for k in self.run.env.keys() {
            let up = k.to_ascii_uppercase();
            if SECRET_HINTS.iter().any(|h| up.contains(h)) {
                return e(
                    &format!("run.env.{k}"),
                    "looks like a secret: put it in a file on the hosts and list the file in `run.env_files` (secrets never go in a spec)".into(),
                );
            }
        }
        if let Err(le) = Selector::parse(&self.targets.selector) {
            return e("targets.selector", le.to_string());
        }
        if self.targets.selector.trim().is_empty() {
            return e("targets.selector", "expected a label selector such as \"role=web\" (an empty one would target every host)".into());
        }
        if let Some(env) = &self.targets.environment
            && let Err(le) = crate::labels::check("environment", env)
        {
            return e("targets.environment", le.to_string());
        }
        if let Err((i, why)) = crate::windows::parse_all(&self.targets.windows) {
            return e(&format!("targets.windows[{i}]"), why);
        }
        for (i, env) in self.targets.requires_success_in.iter().enumerate() {
            if let Err(le) = crate::labels::check("environment", env) {
                return e(&format!("targets.requires_success_in[{i}]"), le.to_string());
            }
            if Some(env) == self.targets.environment.as_ref() {
                return e(
                    &format!("targets.requires_success_in[{i}]"),
                    format!(
                        "`{env}` is this deployment's own environment: expected another one (e.g. staging before production)"
                    ),
                );
            }
            if self.targets.environment.is_none() {
                return e(
                    "targets.environment",
                    "expected an environment: `requires_success_in` gates promotion into one"
                        .into(),
                );
            }
        }
        if let Some(a) = &self.artifact
            && let Err((field, why)) = check_artifact(&a.url, &a.sha256)
        {
            return e(field, why);
        }
        let s = &self.strategy;
        if s.max_unavailable == Amount::Count(0) || s.max_unavailable == Amount::Percent(0) {
            return e(
                "strategy.max_unavailable",
                "expected at least one host (or 1%): with 0 nothing could be replaced".into(),
            );
        }
        if s.max_parallel == Some(0) {
            return e("strategy.max_parallel", "expected at least 1".into());
        }
        if s.healthy_deadline < self.swap.min_ready {
            return e(
                "strategy.healthy_deadline",
                format!(
                    "expected at least swap.min_ready ({}), found {}",
                    humantime::format_duration(self.swap.min_ready),
                    humantime::format_duration(s.healthy_deadline)
                ),
            );
        }
        if s.progress_deadline < s.healthy_deadline {
            return e(
                "strategy.progress_deadline",
                format!(
                    "expected at least strategy.healthy_deadline ({}), found {}",
                    humantime::format_duration(s.healthy_deadline),
                    humantime::format_duration(s.progress_deadline)
                ),
            );
        }
        for (field, d, max) in [
            (
                "strategy.healthy_deadline",
                s.healthy_deadline,
                limits::DEADLINE,
            ),
            (
                "strategy.progress_deadline",
                s.progress_deadline,
                limits::DEADLINE,
            ),
            ("strategy.keep_old", s.keep_old, limits::DEADLINE),
        ] {
            if d > max {
                return e(
                    field,
                    format!(
                        "expected at most {}, found {}",
                        humantime::format_duration(max),
                        humantime::format_duration(d)
                    ),
                );
            }
        }
        if let Some(p) = &self.analysis.prometheus
            && p.timeout > limits::QUERY_TIMEOUT
        {
            return e(
                "analysis.prometheus.timeout",
                format!(
                    "expected at most {}, found {}",
                    humantime::format_duration(limits::QUERY_TIMEOUT),
                    humantime::format_duration(p.timeout)
                ),
            );
        }
        if let Some(sw) = &s.switch
            && !sw.command.is_empty()
            && sw.timeout > crate::service::limits::DURATION
        {
            return e(
                "strategy.switch.timeout",
                format!(
                    "expected at most {}",
                    humantime::format_duration(crate::service::limits::DURATION)
                ),
            );
        }
        if let Some(a) = &self.artifact
            && let Some(m) = a.max_bytes
            && !(1..=limits::ARTIFACT_BYTES).contains(&m)
        {
            return e(
                "artifact.max_bytes",
                format!(
                    "expected between 1 and {} bytes, found {m}",
                    limits::ARTIFACT_BYTES
                ),
            );
        }
        if let Some(v) = &self.version
            && let Err(why) = check_version(v)
        {
            return e("version", why);
        }
        match s.kind {
            StrategyKind::Canary => {
                if s.steps.is_empty() {
                    return e("strategy.steps", "a canary needs at least one step".into());
                }
                let mut last: Option<Amount> = None;
                for (i, step) in s.steps.iter().enumerate() {
                    if let Some(p) = &step.pause
                        && p != "manual"
                    {
                        match humantime::parse_duration(p) {
                            Err(_) => {
                                return e(
                                    &format!("strategy.steps[{i}].pause"),
                                    format!(
                                        "expected a duration like \"2m\" or \"manual\", found \"{p}\""
                                    ),
                                );
                            }
                            Ok(d) if d > limits::DEADLINE => {
                                return e(
                                    &format!("strategy.steps[{i}].pause"),
                                    format!(
                                        "expected at most {} (or \"manual\"), found {p}",
                                        humantime::format_duration(limits::DEADLINE)
                                    ),
                                );
                            }
                            Ok(_) => {}
                        }
                    }
                    if matches!(step.hosts, Amount::Count(0) | Amount::Percent(0)) {
                        return e(
                            &format!("strategy.steps[{i}].hosts"),
                            "expected at least one host (or 1%): a step of none moves nothing"
                                .into(),
                        );
                    }
                    if let Some(prev) = last {
                        let increasing = match (prev, step.hosts) {
                            (Amount::Count(a), Amount::Count(b))
                            | (Amount::Percent(a), Amount::Percent(b)) => b > a,
                            _ => true,
                        };
                        if !increasing {
                            return e(
                                &format!("strategy.steps[{i}].hosts"),
                                format!(
                                    "expected more hosts than the step before ({prev}), found {}",
                                    step.hosts
                                ),
                            );
                        }
                    }
                    if step.analysis && step.hosts == Amount::Percent(100) {
                        return e(
                            &format!("strategy.steps[{i}].analysis"),
                            "a step that moves every host leaves none on the old release to compare with; \
                             put the analysis on an earlier step (a pause here bakes the whole fleet)"
                                .into(),
                        );
                    }
                    last = Some(step.hosts);
                }
            }
            StrategyKind::BlueGreen => {
                if s.groups.len() != 2 || s.groups[0] == s.groups[1] {
                    return e(
                        "strategy.groups",
                        "expected two different group names, e.g. [\"blue\", \"green\"]".into(),
                    );
                }
                if s.switch.as_ref().is_none_or(|h| h.command.is_empty()) {
                    return e(
                        "strategy.switch",
                        "blue/green needs a `switch` command that moves traffic to the new group"
                            .into(),
                    );
                }
                if !s.steps.is_empty() {
                    return e(
                        "strategy.steps",
                        "steps are only for kind = \"canary\"".into(),
                    );
                }
            }
            _ if !s.steps.is_empty() => {
                return e(
                    "strategy.steps",
                    "steps are only for kind = \"canary\"".into(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
service = "web"

[run]
command = ["bin/web"]

[[listen]]
name = "http"
address = "0.0.0.0:8080"

[strategy]
kind = "rolling"
max_unavailable = "25%"

[targets]
selector = "role=web"
"#;

    #[test]
    fn a_good_spec_parses_with_defaults() {
        let s = DeploySpec::parse(GOOD, "app.toml").unwrap();
        assert_eq!(s.strategy.max_unavailable, Amount::Percent(25));
        assert!(s.rollback.auto);
        assert_eq!(s.service_spec().service, "web");
    }

    #[test]
    fn amounts_take_counts_and_percentages_of_the_fleet() {
        assert_eq!(Amount::Percent(25).of(6), 1);
        assert_eq!(Amount::Percent(50).of(6), 3);
        assert_eq!(
            Amount::Percent(10).of(3),
            1,
            "a non-zero share is at least one host"
        );
        assert_eq!(Amount::Percent(10).floor_of(5), 0);
        assert_eq!(Amount::Count(9).of(4), 4);
    }

    fn error_of(text: &str) -> SpecError {
        DeploySpec::parse(text, "app.toml").unwrap_err()
    }

    #[test]
    fn values_past_their_bounds_are_refused_naming_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[run]",
                "[swap]\nmin_ready = \"100000000000years\"\n[run]",
                "swap.min_ready",
            ),
            ("[run]", "[swap]\ngrace = \"2days\"\n[run]", "swap.grace"),
            (
                "[run]",
                "[logs]\nmax_bytes = 18446744073709551615\n[run]",
                "logs.max_bytes",
            ),
            (
                "[run]",
                "[restart]\nbackoff_max = \"400days\"\n[run]",
                "restart.backoff_max",
            ),
            (
                "[run]",
                "[drain]\nderegistration_delay = \"3days\"\n[run]",
                "drain.deregistration_delay",
            ),
            (
                "max_unavailable = \"25%\"",
                "max_unavailable = \"25%\"\nhealthy_deadline = \"40days\"\nprogress_deadline = \"41days\"",
                "strategy.healthy_deadline",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"../../bin/sh\"]",
                "run.command",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"bin/web\"]\nworking_dir = \"../..\"",
                "run.working_dir",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"bin/web\"]\nworking_dir = \"/etc\"",
                "run.working_dir",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"bin/web\"]\nenv_files = [\"secrets.env\"]",
                "run.env_files[0]",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"bin/web\"]\nuser = \"\"",
                "run.user",
            ),
            (
                "command = [\"bin/web\"]",
                "command = [\"bin/web\"]\nuser = \"root; rm\"",
                "run.user",
            ),
            (
                "selector = \"role=web\"",
                "selector = \"role=web\"\n[artifact]\nurl = \"https://x/a.tgz\"\nsha256 = \"xyz\"",
                "artifact.sha256",
            ),
            (
                "service = \"web\"",
                "service = \"web\"\nversion = \"\"",
                "version",
            ),
            (
                "service = \"web\"",
                "service = \"web\"\nversion = \"1 2\"",
                "version",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "{from}");
            let e = error_of(&GOOD.replacen(from, to, 1));
            assert_eq!(&e.field, field, "{to}: {e}");
        }
        let canary = GOOD.replace(
            "kind = \"rolling\"",
            "kind = \"canary\"\nsteps = [{ hosts = \"0%\", pause = \"1m\" }, { hosts = \"50%\", pause = \"60days\" }]",
        );
        assert_eq!(error_of(&canary).field, "strategy.steps[0].hosts");
        let canary = canary.replace("\"0%\"", "\"10%\"");
        assert_eq!(error_of(&canary).field, "strategy.steps[1].pause");
        // The bounds themselves pass.
        let edge = GOOD.replace(
            "[run]",
            "[swap]\nmin_ready = \"24h\"\nready_timeout = \"24h\"\n[run]",
        );
        let edge = edge.replace(
            "max_unavailable = \"25%\"",
            "max_unavailable = \"25%\"\nhealthy_deadline = \"24h\"\nprogress_deadline = \"24h\"",
        );
        DeploySpec::parse(&edge, "app.toml").unwrap();
    }

    #[test]
    fn overrides_are_checked_like_the_spec() {
        assert!(check_artifact("https://x/a.tgz", "xyz").is_err());
        assert!(check_artifact("ftp://x/a.tgz", &"a".repeat(64)).is_err());
        assert_eq!(
            check_artifact("https://x/a.tgz", &format!("sha256:{}", "AB".repeat(32))).unwrap(),
            "ab".repeat(32)
        );
        // A spec's own checksum is kept in one spelling too.
        let spelled = |h: &str| {
            let text = format!(
                "service = \"web\"\n[run]\ncommand = [\"bin/web\"]\n[targets]\nselector = \"role=web\"\n[artifact]\nurl = \"https://x/a.tgz\"\nsha256 = \"{h}\""
            );
            DeploySpec::parse(&text, "app.toml")
                .unwrap()
                .artifact
                .unwrap()
                .sha256
        };
        assert_eq!(
            spelled(&format!("sha256:{}", "AB".repeat(32))),
            "ab".repeat(32)
        );
        assert_eq!(spelled(&"ab".repeat(32)), "ab".repeat(32));
        assert!(check_version("1.2.3+build.4").is_ok());
        assert!(check_version("").is_err());
        assert!(check_version(&"1".repeat(200)).is_err());
    }

    #[test]
    fn a_wrong_value_names_line_field_and_expectation() {
        let e = error_of(&GOOD.replace("max_unavailable = \"25%\"", "max_unavailable = \"lots\""));
        assert_eq!(e.field, "strategy.max_unavailable");
        assert_eq!(e.line, 13);
        assert!(e.expected.contains("percentage"), "{e}");
        assert!(e.to_string().starts_with("app.toml:13:"), "{e}");
    }

    #[test]
    fn cross_field_errors_point_at_the_field() {
        let e = error_of(&GOOD.replace(
            "max_unavailable = \"25%\"",
            "max_unavailable = \"25%\"\nprogress_deadline = \"1s\"",
        ));
        assert_eq!(e.field, "strategy.progress_deadline");
        assert_eq!(e.line, 14);
    }
}
