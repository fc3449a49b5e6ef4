//! Prometheus metrics (OpenMetrics text) at `GET /metrics` on
//! `metrics_listen`: the fleet by state, agent sessions, deployments by
//! outcome, rollout and batch durations, rollbacks, commands in flight,
//! and the DORA measures over the last 30 days. Plain HTTP with nothing
//! secret in it; bind it to an address only the monitoring can reach.
//! The list, with meanings, is in docs/metrics.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    service: String,
    environment: String,
    strategy: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RollbackLabel {
    service: String,
    environment: String,
    kind: String,
}

/// How deployments end: every one is a series from the start, at 0, so
/// that `increase()` sees the first of each (docs/metrics.md).
const OUTCOMES: [&str; 4] = ["succeeded", "rolled_back", "aborted", "failed"];
const ROLLBACK_KINDS: [&str; 2] = ["auto", "operator"];
const COMMAND_KINDS: [&str; 7] = [
    "stage", "activate", "rollback", "stop", "drain", "undrain", "run_hook",
];
const HOST_STATES: [&str; 3] = ["enrolled", "ready", "lost"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabel {
    certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// How long a drift count is reused: counting reads the recent
/// deployments of every service, too much for every scrape.
const DRIFT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// `cutover_build_info` and `cutover_leader`, which every coordinator
/// serves, a standby too.
fn register_identity(registry: &mut Registry, build: &Family<VersionLabel, Gauge>, leader: &Gauge) {
    build
        .get_or_create(&VersionLabel {
            version: env!("CARGO_PKG_VERSION").into(),
        })
        .set(1);
    registry.register(
        "build_info",
        "1, with this coordinator's version",
        build.clone(),
    );
    registry.register(
        "leader",
        "1 on the coordinator that leads (always, with the SQLite store); 0 on a standby",
        leader.clone(),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabel {
    strategy: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the coordinator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    hosts: Family<StateLabel, Gauge>,
    sessions: Gauge,
    deployments_active: Gauge,
    deployments: Family<OutcomeLabel, Counter>,
    rollbacks: Family<RollbackLabel, Counter>,
    rollout_duration: Family<StrategyLabel, Histogram>,
    batch_duration: Histogram,
    commands_sent: Family<KindLabel, Counter>,
    commands_in_flight: Gauge,
    tls_handshakes: Family<KindLabel, Counter>,
    dora_frequency: FloatGauge,
    dora_lead_time: FloatGauge,
    dora_failure_rate: FloatGauge,
    dora_restore: FloatGauge,
    leader_term: Gauge,
    leader_since: Gauge,
    build_info: Family<VersionLabel, Gauge>,
    leader: Gauge,
    certificate_expiry: Family<CertificateLabel, Gauge>,
    drifted: Family<ServiceLabel, Gauge>,
    /// When the drift was last counted.
    drift_counted: std::sync::Mutex<Option<std::time::Instant>>,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.25 s .. about 68 minutes (past the default 15 min deadline).
    exponential_buckets(0.25, 2.0, 15)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let m = Metrics {
            hosts: Family::default(),
            sessions: Gauge::default(),
            deployments_active: Gauge::default(),
            deployments: Family::default(),
            rollbacks: Family::default(),
            rollout_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            batch_duration: Histogram::new(seconds_buckets()),
            commands_sent: Family::default(),
            commands_in_flight: Gauge::default(),
            tls_handshakes: Family::default(),
            dora_frequency: FloatGauge::default(),
            dora_lead_time: FloatGauge::default(),
            dora_failure_rate: FloatGauge::default(),
            dora_restore: FloatGauge::default(),
            leader_term: Gauge::default(),
            leader_since: Gauge::default(),
            build_info: Family::default(),
            leader: Gauge::default(),
            certificate_expiry: Family::default(),
            drifted: Family::default(),
            drift_counted: Default::default(),
            registry: Registry::default(),
        };
        register_identity(&mut registry, &m.build_info, &m.leader);
        m.leader.set(1);
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "When a certificate expires (Unix time): the cluster CA (`ca`), this coordinator's server certificate (`server`), the host certificate that expires first (`host_soonest`; hosts renew theirs by themselves)",
            Unit::Seconds,
            m.certificate_expiry.clone(),
        );
        registry.register(
            "hosts_drifted",
            "Hosts whose service differs from what Cutover left there (files changed in its release, or another release running), by service; counted at most once a minute",
            m.drifted.clone(),
        );
        registry.register("hosts", "Enrolled hosts by state", m.hosts.clone());
        registry.register("agent_sessions", "Agents connected now", m.sessions.clone());
        registry.register(
            "deployments_active",
            "Deployments running now",
            m.deployments_active.clone(),
        );
        registry.register(
            "deployments",
            "Deployments finished, by outcome and strategy",
            m.deployments.clone(),
        );
        registry.register(
            "rollbacks",
            "Rollbacks, automatic (by policy) or by an operator",
            m.rollbacks.clone(),
        );
        registry.register_with_unit(
            "rollout_duration",
            "Time from a deployment's start to its end",
            Unit::Seconds,
            m.rollout_duration.clone(),
        );
        registry.register_with_unit(
            "batch_duration",
            "Time from a batch's start until every host of it is done",
            Unit::Seconds,
            m.batch_duration.clone(),
        );
        registry.register(
            "commands_sent",
            "Commands sent to agents by rollouts and operators, by kind (re-sends included)",
            m.commands_sent.clone(),
        );
        registry.register(
            "commands_in_flight",
            "Commands sent and not answered yet (rollouts' and operators')",
            m.commands_in_flight.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed, by kind: full, or resumed with a session ticket",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "dora_deployments_per_day",
            "Succeeded changes per day over the last 30 days",
            m.dora_frequency.clone(),
        );
        registry.register_with_unit(
            "dora_lead_time_median",
            "Median lead time for changes (commit to running) over the last 30 days",
            Unit::Seconds,
            m.dora_lead_time.clone(),
        );
        registry.register(
            "dora_change_failure_ratio",
            "Failed changes over all changes in the last 30 days",
            m.dora_failure_rate.clone(),
        );
        registry.register_with_unit(
            "dora_time_to_restore_median",
            "Median time to restore service after a failed change, last 30 days",
            Unit::Seconds,
            m.dora_restore.clone(),
        );
        registry.register(
            "leader_term",
            "The leader term this coordinator acts in (PostgreSQL store; 0 with SQLite, where one coordinator is always the leader). Each failover starts a new term: changes() counts them",
            m.leader_term.clone(),
        );
        registry.register_with_unit(
            "leader_since_timestamp",
            "When this coordinator started to lead (Unix time; its start with SQLite)",
            Unit::Seconds,
            m.leader_since.clone(),
        );
        m.leader_since.set(cutover_common::time::now_ms() / 1000);
        for kind in COMMAND_KINDS {
            let _ = m
                .commands_sent
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        for kind in ["full", "resumed"] {
            let _ = m
                .tls_handshakes
                .get_or_create(&KindLabel { kind: kind.into() });
        }
        for state in HOST_STATES {
            let _ = m.hosts.get_or_create(&StateLabel {
                state: state.into(),
            });
        }
        Metrics { registry, ..m }
    }
}

/// The spec's own name of a strategy (`blue_green`).
fn strategy_name(s: cutover_common::deploy::StrategyKind) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Metrics {
    /// The expiry of the CA's and this coordinator's certificates, as
    /// loaded at start.
    pub fn certificates(&self, ca_der: &[u8], server_der: &[u8]) {
        for (name, der) in [("ca", ca_der), ("server", server_der)] {
            if let Some(secs) = cutover_common::pki::not_after_secs(der) {
                self.certificate_expiry
                    .get_or_create(&CertificateLabel {
                        certificate: name.into(),
                    })
                    .set(secs);
            }
        }
    }

    /// This coordinator leads `term` from now.
    pub fn leading(&self, term: u64) {
        self.leader_term.set(term as i64);
        self.leader_since.set(cutover_common::time::now_ms() / 1000);
    }

    /// Makes the series of `service` in `environment` deployed by
    /// `strategy` exist, at 0: a deployment's end and a rollback then show
    /// as an increase from the first one (a series born at 1 does not).
    /// Called for the services of the stored history at start and for
    /// each deployment as it starts.
    pub fn known(&self, service: &str, environment: &str, strategy: &str) {
        for outcome in OUTCOMES {
            let _ = self.deployments.get_or_create(&OutcomeLabel {
                service: service.into(),
                environment: environment.into(),
                strategy: strategy.into(),
                outcome: outcome.into(),
            });
        }
        for kind in ROLLBACK_KINDS {
            let _ = self.rollbacks.get_or_create(&RollbackLabel {
                service: service.into(),
                environment: environment.into(),
                kind: kind.into(),
            });
        }
        // At 0 until counted (at most a minute later).
        let _ = self.drifted.get_or_create(&ServiceLabel {
            service: service.into(),
        });
    }

    /// A rollout of `service` in `environment` started.
    pub fn rollout_started(&self, r: &crate::engine::Rollout, environment: &str) {
        self.known(&r.service, environment, &strategy_name(r.strategy));
    }

    /// A rollout ended.
    pub fn rollout_finished(&self, r: &crate::engine::Rollout, environment: &str) {
        let strategy = strategy_name(r.strategy);
        self.deployments
            .get_or_create(&OutcomeLabel {
                service: r.service.clone(),
                environment: environment.into(),
                strategy: strategy.clone(),
                outcome: r.phase.name().into(),
            })
            .inc();
        if let Some(end) = r.finished_ms {
            self.rollout_duration
                .get_or_create(&StrategyLabel { strategy })
                .observe((end - r.started_ms).max(0) as f64 / 1000.0);
        }
        match r.phase {
            crate::engine::Phase::RolledBack { .. } => {
                self.rollback(&r.service, environment, "auto")
            }
            crate::engine::Phase::Aborted { .. } => {
                self.rollback(&r.service, environment, "operator")
            }
            _ => {}
        }
    }

    /// A rollback of `service` in `environment` happened (`auto` or
    /// `operator`).
    pub fn rollback(&self, service: &str, environment: &str, kind: &str) {
        self.rollbacks
            .get_or_create(&RollbackLabel {
                service: service.into(),
                environment: environment.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// A batch took `ms` from its start until all its hosts were done.
    pub fn batch_done(&self, ms: i64) {
        self.batch_duration.observe(ms.max(0) as f64 / 1000.0);
    }

    /// A rollout sent a command of `kind`.
    pub fn command_sent(&self, kind: &str) {
        self.commands_sent
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// A TLS handshake completed, `resumed` with a session ticket.
    pub fn tls_handshake(&self, resumed: bool) {
        let kind = if resumed { "resumed" } else { "full" };
        self.tls_handshakes
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Refreshes the gauges from the live state, then encodes everything.
    pub async fn render(&self, app: &Arc<App>) -> String {
        for state in HOST_STATES {
            self.hosts
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(0);
        }
        for (state, n) in app.fleet.count_by_state() {
            self.hosts
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
        self.sessions.set(app.fleet.sessions() as i64);
        let soonest = app
            .fleet
            .map_hosts(|r, _, _, _| r.cert_not_after)
            .into_iter()
            .filter(|ms| *ms > 0)
            .min();
        if let Some(ms) = soonest {
            self.certificate_expiry
                .get_or_create(&CertificateLabel {
                    certificate: "host_soonest".into(),
                })
                .set(ms / 1000);
        }
        self.count_drift(app).await;
        self.deployments_active.set(app.rollouts.running() as i64);
        self.commands_in_flight
            .set((app.commands.in_flight() + app.rollouts.commands_in_flight()) as i64);
        let since = cutover_common::time::now_ms() - 30 * 86_400_000;
        if let Ok(d) = crate::dora::measure(app, String::new(), String::new(), since).await {
            self.dora_frequency.set(d.deployments_per_day);
            self.dora_lead_time
                .set(d.lead_time.map_or(0.0, |s| s.median_ms as f64 / 1000.0));
            self.dora_failure_rate
                .set(d.change_failure_rate.unwrap_or(0.0));
            self.dora_restore.set(
                d.time_to_restore
                    .map_or(0.0, |s| s.median_ms as f64 / 1000.0),
            );
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Metrics {
    /// Refreshes `hosts_drifted` when it was counted over a minute ago:
    /// the same drift `cutover hosts` and `cutover drift` show.
    async fn count_drift(&self, app: &Arc<App>) {
        {
            let mut last = self.drift_counted.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < DRIFT_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let Ok(counts) = crate::grpc::control::drift_by_service(app).await else {
            return;
        };
        // Services that drifted before and not now go back to 0.
        self.drifted.clear();
        for (service, n) in counts {
            self.drifted.get_or_create(&ServiceLabel { service }).set(n);
        }
    }
}

/// What a standby serves at `/metrics`: that it is one, its version, and
/// the term of the leader it sees.
#[derive(Debug)]
pub struct StandbyMetrics {
    registry: Registry,
    leader_term: Gauge,
}

impl Default for StandbyMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let (build, leader, leader_term) = (Family::default(), Gauge::default(), Gauge::default());
        register_identity(&mut registry, &build, &leader);
        registry.register(
            "leader_term",
            "The leader term this coordinator acts in; on a standby, the term of the leader it sees (0: none)",
            leader_term.clone(),
        );
        StandbyMetrics {
            registry,
            leader_term,
        }
    }
}

impl StandbyMetrics {
    pub fn render(&self, term: u64) -> String {
        self.leader_term.set(term as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// OpenMetrics text as Prometheus' older text format (0.0.4), for
/// scrapers that do not ask for OpenMetrics: counters named with their
/// `_total` in HELP and TYPE, no UNIT lines, no `# EOF`.
pub fn text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Whether a scrape's `Accept` header asks for OpenMetrics (Prometheus
/// does); anything else gets the text format.
fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Serves `GET /metrics` on `listener` until `shutdown`, within the
/// bounds of an endpoint anyone on the network can reach
/// ([`cutover_common::net::HttpLimits`]).
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: CancellationToken) {
    serve_rendered(listener, shutdown, move || {
        let app = app.clone();
        async move { app.metrics.render(&app).await }
    })
    .await
}

/// Serves `GET /metrics` with what `render` makes (OpenMetrics text), in
/// the format the scraper asks for.
pub async fn serve_rendered<F, Fut>(listener: TcpListener, shutdown: CancellationToken, render: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    cutover_common::net::serve_http(
        listener,
        cutover_common::net::HttpLimits::default(),
        shutdown,
        "metrics",
        move |_peer, req: Request<Incoming>| {
            let render = render.clone();
            async move {
                let (status, ctype, body) = if req.uri().path() == "/metrics" {
                    let accept = req
                        .headers()
                        .get(hyper::header::ACCEPT)
                        .and_then(|v| v.to_str().ok());
                    let om = render().await;
                    if wants_openmetrics(accept) {
                        (
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            om,
                        )
                    } else {
                        (
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            text_format(&om),
                        )
                    }
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        "try /metrics\n".to_string(),
                    )
                };
                Response::builder()
                    .status(status)
                    .header("content-type", ctype)
                    .body(Full::new(Bytes::from(body)))
                    .expect("valid response")
            }
        },
    )
    .await
}

/// Binds `addr` for [`serve`] (so a bad address stops the start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_with_total_and_drops_what_openmetrics_adds() {
        let m = Metrics::default();
        m.known("web", "production", "rolling");
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &m.registry).unwrap();
        assert!(om.contains("# TYPE cutover_deployments counter"), "{om}");
        let text = text_format(&om);
        assert!(
            text.contains("# TYPE cutover_deployments_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP cutover_deployments_total "), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        // Every series a deployment or rollback will move exists at 0.
        assert!(text.contains(
            "cutover_deployments_total{service=\"web\",environment=\"production\",strategy=\"rolling\",outcome=\"rolled_back\"} 0"
        ), "{text}");
        assert!(text.contains(
            "cutover_rollbacks_total{service=\"web\",environment=\"production\",kind=\"auto\"} 0"
        ), "{text}");
        assert!(
            text.contains("cutover_commands_sent_total{kind=\"drain\"} 0"),
            "{text}"
        );
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
