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
    outcome: String,
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
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
    rollbacks: Family<KindLabel, Counter>,
    rollout_duration: Family<StrategyLabel, Histogram>,
    batch_duration: Histogram,
    commands_sent: Family<KindLabel, Counter>,
    commands_in_flight: Gauge,
    tls_handshakes: Family<KindLabel, Counter>,
    dora_frequency: FloatGauge,
    dora_lead_time: FloatGauge,
    dora_failure_rate: FloatGauge,
    dora_restore: FloatGauge,
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
            registry: Registry::default(),
        };
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
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// A rollout ended.
    pub fn rollout_finished(&self, r: &crate::engine::Rollout) {
        // The spec's own name (`blue_green`).
        let strategy = serde_json::to_value(r.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.deployments
            .get_or_create(&OutcomeLabel {
                outcome: r.phase.name().into(),
                strategy: strategy.clone(),
            })
            .inc();
        if let Some(end) = r.finished_ms {
            self.rollout_duration
                .get_or_create(&StrategyLabel { strategy })
                .observe((end - r.started_ms).max(0) as f64 / 1000.0);
        }
        match r.phase {
            crate::engine::Phase::RolledBack { .. } => self.rollback("auto"),
            crate::engine::Phase::Aborted { .. } => self.rollback("operator"),
            _ => {}
        }
    }

    /// A rollback happened (`auto` or `operator`).
    pub fn rollback(&self, kind: &str) {
        self.rollbacks
            .get_or_create(&KindLabel { kind: kind.into() })
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
        for (state, n) in app.fleet.count_by_state() {
            self.hosts
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
        self.sessions.set(app.fleet.sessions() as i64);
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

/// Serves `GET /metrics` on `listener` until `shutdown`, within the
/// bounds of an endpoint anyone on the network can reach
/// ([`cutover_common::net::HttpLimits`]).
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: CancellationToken) {
    cutover_common::net::serve_http(
        listener,
        cutover_common::net::HttpLimits::default(),
        shutdown,
        "metrics",
        move |_peer, req: Request<Incoming>| {
            let app = app.clone();
            async move {
                let (status, ctype, body) = if req.uri().path() == "/metrics" {
                    (
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        app.metrics.render(&app).await,
                    )
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
