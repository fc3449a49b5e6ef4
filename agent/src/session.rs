//! The agent's session to the coordinator: dial out with the host
//! certificate, say `Hello`, exchange heartbeats, renew the certificate at
//! about two thirds of its lifetime over the live stream, and reconnect
//! with jittered exponential backoff whenever the session ends.

use std::time::{Duration, SystemTime};

use cutover_common::identity::Identity;
use cutover_common::pki::{self, HostKey};
use cutover_common::time::now_ms;
use cutover_common::tls::{self, ChannelOptions};
use cutover_common::{VERSION, error_chain};
use cutover_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::facts;
use crate::identity::{IdentityError, IdentityFiles};
use crate::runtime::{Outputs, Runtime};
use crate::service::Health;
use std::sync::Arc;

/// A session attempt that failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the coordinator refused the session: {0}")]
    Refused(String),
    /// A standby coordinator (several share a PostgreSQL store): it names
    /// the leader when there is one.
    #[error("{message}")]
    Standby {
        message: String,
        leader: Option<String>,
    },
    #[error("the session broke: {0}")]
    Broken(String),
    #[error("host certificate expired at {at}; this host must be enrolled again")]
    Expired { at: String },
}

impl SessionError {
    /// Local problems that retrying will not fix are not retryable.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SessionError::Identity(_))
    }

    /// The coordinator's answer to opening a session, or the transport's
    /// when there was none: a call cut off in transit (the coordinator
    /// restarting, say) is a broken session, not a refusal.
    fn from_status(s: tonic::Status) -> SessionError {
        // First: a standby's answer is UNAVAILABLE too.
        if let Some(leader) = standby_leader(&s) {
            return SessionError::Standby {
                message: s.message().to_string(),
                leader,
            };
        }
        if tls::status_is_interrupted(&s) {
            SessionError::Broken(format!(
                "the call ended before the coordinator answered ({})",
                tls::status_detail(&s)
            ))
        } else {
            SessionError::Refused(s.message().to_string())
        }
    }
}

/// A standby's refusal (UNAVAILABLE saying so): the leader's URL from its
/// `cutover-leader` header, if it named one.
pub fn standby_leader(s: &tonic::Status) -> Option<Option<String>> {
    if s.code() != tonic::Code::Unavailable || !s.message().contains("standby") {
        return None;
    }
    Some(
        s.metadata()
            .get(cutover_common::wire::LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|u| u.starts_with("https://"))
            .map(str::to_string),
    )
}

/// The coordinators an agent tries, in order: after one that fails, the
/// next; a standby's answer naming the leader, the leader next.
#[derive(Debug)]
pub struct Targets {
    pub urls: Vec<String>,
    next: usize,
    /// The leader a standby named, tried next (once).
    hinted: Option<String>,
    /// The URL being tried, when a standby named it.
    trying_hint: Option<String>,
    /// A named leader that could not be reached: named again (its lease
    /// has not run out yet, it just died), it is not run to again at once.
    dead_hint: Option<String>,
    /// Attempts since the last back-off.
    tried: usize,
}

impl Targets {
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            next: 0,
            hinted: None,
            trying_hint: None,
            dead_hint: None,
            tried: 0,
        }
    }

    /// The URL to try now.
    pub fn pick(&mut self) -> String {
        if let Some(h) = self.hinted.take() {
            self.trying_hint = Some(h.clone());
            return h;
        }
        self.trying_hint = None;
        let u = self.urls[self.next % self.urls.len()].clone();
        self.next = (self.next + 1) % self.urls.len();
        u
    }

    /// After a failure: whether to try again at once (a leader was named,
    /// or addresses are left in this round) rather than back off.
    /// A round is one attempt per address (and the leaders named on the
    /// way): then a back-off.
    pub fn failed(&mut self, e: &SessionError) -> bool {
        self.tried += 1;
        if let SessionError::Standby {
            leader: Some(l), ..
        } = e
            && self.dead_hint.as_ref() != Some(l)
        {
            self.hinted = Some(l.clone());
        } else if let Some(h) = self.trying_hint.take() {
            self.dead_hint = Some(h);
        }
        let at_once =
            self.hinted.is_some() || (self.urls.len() > 1 && self.tried < self.urls.len());
        if !at_once {
            self.tried = 0;
        }
        at_once
    }

    /// A leader a standby named that could not be reached: sent to the
    /// next standby, which answers once another leads.
    pub fn dead_leader(&self) -> Option<&str> {
        self.dead_hint.as_deref()
    }

    /// A session was established with `url`: start there next time.
    pub fn worked(&mut self, url: &str) {
        self.dead_hint = None;
        self.tried = 0;
        if let Some(i) = self.urls.iter().position(|u| u == url) {
            self.next = i;
        }
    }
}

/// `cutover logs` requests a session answers at once.
const MAX_LOG_REQUESTS: usize = 8;

/// How a session that was established ended.
#[derive(Debug)]
enum Ended {
    Shutdown,
    Lost(String),
}

/// Runs sessions until `shutdown`, reconnecting as needed. Returns an
/// error only for local problems (not enrolled, unreadable identity).
pub async fn run(
    cfg: AgentConfig,
    rt: Arc<Runtime>,
    mut outputs: Outputs,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let files = IdentityFiles::new(&cfg.identity_dir());
    let enrollment = files.enrollment_record()?;
    let mut targets = Targets::new(cfg.coordinator_urls(&enrollment.coordinator));
    let mut backoff = Backoff::new(
        cfg.reconnect_initial,
        cfg.reconnect_max,
        cfg.reconnect_jitter,
    );
    tracing::info!(host = %enrollment.host_id, coordinators = %targets.urls.join(", "), "agent starting");
    let tickets = tls::SessionTickets::default();
    loop {
        let started = Instant::now();
        let url = targets.pick();
        let dead_leader = targets.dead_leader().map(str::to_string);
        let at_once;
        match session(
            &cfg,
            &files,
            &tickets,
            &enrollment.host_id,
            (&url, dead_leader.as_deref()),
            &rt,
            &mut outputs,
            &shutdown,
        )
        .await
        {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Lost(reason)) => {
                tracing::warn!(reason = %reason, coordinator = %url, "session to the coordinator ended");
                targets.worked(&url);
                if started.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                // Another coordinator may lead now: the next one at once.
                at_once = targets.urls.len() > 1;
                if at_once {
                    targets.next = (targets.next + 1) % targets.urls.len();
                }
            }
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => {
                at_once = targets.failed(&e);
                let chain = error_chain(&e);
                rt.notify_status(&format!("cannot reach the coordinator: {chain}"));
                match tls::explain(&chain) {
                    Some(hint) => tracing::warn!(error = %chain, hint, "cannot open a session"),
                    None => tracing::warn!(error = %chain, "cannot open a session"),
                }
            }
        }
        let delay = if at_once {
            // A moment, so that a pair of standbys naming each other
            // cannot spin.
            Duration::from_millis(100)
        } else {
            backoff.next_delay()
        };
        tracing::info!(delay = ?delay, "reconnecting");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn hello(cfg: &AgentConfig, host_id: &str, rt: &Runtime) -> pb::AgentMessage {
    let f = facts::collect();
    let services = rt
        .summaries()
        .await
        .into_iter()
        .map(|s| pb::ServiceState {
            service: s.service,
            active_release: s.active_release.unwrap_or_default(),
            previous_release: s.previous_release.unwrap_or_default(),
            drained: s.drained,
            stopped: s.stopped,
            staged_releases: s.staged,
        })
        .collect();
    let unacked_results = rt.unacked().iter().map(pb::CommandResult::from).collect();
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            host_id: host_id.into(),
            agent_version: VERSION.into(),
            labels: cfg.labels.clone().into_iter().collect(),
            boot_id: f.boot_id,
            facts: Some(pb::HostFacts {
                hostname: f.hostname,
                cpus: f.cpus,
                memory_bytes: f.memory_bytes,
                os: f.os,
                kernel: f.kernel,
                arch: f.arch,
            }),
            services,
            unacked_results,
            capabilities: cutover_common::compat::AGENT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
            newest_epoch: rt.newest_epoch(),
            newest_term: rt.newest_term(),
        })),
    }
}

fn health_message(h: &Health) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Health(pb::HealthReport {
            service: h.service.clone(),
            release: h.release.clone(),
            status: h.status.clone(),
            pid: h.pid,
            drained: h.drained,
            restarts: h.restarts,
            probes: h
                .probes
                .iter()
                .map(|(role, p)| pb::ProbeReport {
                    role: role.clone(),
                    passing: p.passing,
                    last_detail: p
                        .last
                        .as_ref()
                        .map(|o| o.detail.clone())
                        .unwrap_or_default(),
                    checks: p.checks,
                    failed_checks: p.failed_checks,
                    recent_latency_ms: p.recent_latency_ms.clone(),
                })
                .collect(),
            cpu_percent: h.cpu_percent,
            memory_bytes: h.memory_bytes,
            at_ms: now_ms(),
            drift: h.drift.clone(),
            // Nothing until the first scrape said something.
            app: h
                .app
                .as_ref()
                .filter(|a| a.counters.is_some() || a.error.is_some())
                .map(|a| pb::AppMetricsReport {
                    requests: a.counters.as_ref().map_or(0, |c| c.requests),
                    errors: a.counters.as_ref().map_or(0, |c| c.errors),
                    latency: a
                        .counters
                        .iter()
                        .flat_map(|c| &c.latency)
                        .map(|(le, count)| pb::LatencyBucket {
                            le_seconds: *le,
                            count: *count,
                        })
                        .collect(),
                    error: a.error.clone().unwrap_or_default(),
                }),
        })),
    }
}

fn result_message(r: &crate::command::CommandResult) -> pb::AgentMessage {
    pb::AgentMessage {
        body: Some(pb::agent_message::Body::Result(pb::CommandResult::from(r))),
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`.
pub fn renew_time(not_before: SystemTime, not_after: SystemTime, fraction: f64) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life.mul_f64(fraction)
}

fn instant_of(t: SystemTime) -> Instant {
    let now = SystemTime::now();
    match t.duration_since(now) {
        Ok(d) => Instant::now() + d,
        Err(_) => Instant::now(),
    }
}

/// A renewal in flight: the new key waits for its certificate.
struct PendingRenewal {
    key: HostKey,
    sent: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &AgentConfig,
    files: &IdentityFiles,
    tickets: &tls::SessionTickets,
    host_id: &str,
    (url, dead_leader): (&str, Option<&str>),
    rt: &Arc<Runtime>,
    outputs: &mut Outputs,
    shutdown: &CancellationToken,
) -> Result<Ended, SessionError> {
    let identity = files.tls_identity()?;
    let info = identity.info().map_err(IdentityError::from)?;
    if info.not_after <= SystemTime::now() {
        return Err(SessionError::Expired {
            at: humantime::format_rfc3339_seconds(info.not_after).to_string(),
        });
    }
    let ca = files.ca_certs()?;
    // Read afresh each time, so a renewed certificate is used at once; the
    // tickets kept for it let a reconnect after a coordinator restart
    // resume rather than make a full handshake.
    let tls_cfg = tls::resuming_client_config(&ca, &identity, tickets)?;
    let opts = ChannelOptions {
        connect_timeout: cfg.connect_timeout,
        ..ChannelOptions::default()
    };
    let channel = tls::connect(url, tls_cfg, opts).await?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(64);
    tx.try_send(hello(cfg, host_id, rt).await)
        .expect("fresh channel has room");
    let mut call = tonic::Request::new(ReceiverStream::new(rx));
    // A leader a standby named but that could not be reached: a standby
    // answers once another leads, rather than naming it again.
    if let Some(v) = dead_leader.and_then(|d| d.parse().ok()) {
        call.metadata_mut()
            .insert(cutover_common::wire::DEAD_LEADER_HEADER, v);
    }
    let mut inbound = client
        .session(call)
        .await
        .map_err(SessionError::from_status)?
        .into_inner();
    let welcome = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(w)),
        }))) => w,
        Ok(Ok(_)) => {
            return Err(SessionError::Broken(
                "expected Welcome as the first message".into(),
            ));
        }
        Ok(Err(s)) => return Err(SessionError::from_status(s)),
        Err(_) => return Err(SessionError::Broken("no Welcome within 10s".into())),
    };
    // The leader term: commands of older terms (a deposed leader's) are
    // refused from now on.
    rt.see_term(welcome.leader_term);
    let heartbeat_every = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
    let silence_limit = Duration::from_millis(welcome.host_timeout_ms.max(1000));
    tracing::info!(
        session = %welcome.session_id, host = %host_id,
        labels = %cutover_common::labels::format(&welcome.labels.clone().into_iter().collect()),
        "session established"
    );
    rt.notify_status(&format!("connected to {url} as {host_id}"));

    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut cert_window = (info.not_before, info.not_after);
    let mut renew_at = instant_of(renew_time(cert_window.0, cert_window.1, cfg.renew_at));
    let mut pending: Option<PendingRenewal> = None;
    // Changes are reported at once (below); the periodic report refreshes
    // the probe samples canary analysis compares (see
    // `Runtime::health_period`).
    let mut next_health = Instant::now();
    // This session's handshake brought tickets (if the coordinator issues
    // any); fresh ones are collected before they run out, and after a
    // renewal, so that a coordinator restart finds a live one.
    let ticket_lifetime = Duration::from_millis(welcome.session_ticket_lifetime_ms);
    let mut tickets_due =
        tls::ticket_refresh_after(ticket_lifetime, rand::random()).map(|d| Instant::now() + d);
    let mut collecting: Option<TicketCollection<'_>> = None;
    // Collections that failed (or brought no ticket) in a row: each waits
    // longer before the next (`tls::ticket_retry_after`).
    let mut collect_failures: u32 = 0;
    // `cutover logs` requests being answered; all end with the session.
    let logs_session = CancellationToken::new();
    let _logs_end = logs_session.clone().drop_guard();
    let mut logs: std::collections::HashMap<String, CancellationToken> = Default::default();

    loop {
        let silence_deadline = last_heard + silence_limit;
        tokio::select! {
            // Cancel-safe: a token wait holds no data.
            _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
            // Cancel-safe: interval ticks are not lost by being dropped.
            _ = heartbeat.tick() => {
                let hb = pb::AgentMessage { body: Some(pb::agent_message::Body::Heartbeat(pb::Heartbeat { sent_at_ms: now_ms() })) };
                if tx.send(hb).await.is_err() {
                    return Ok(Ended::Lost("outbound stream closed".into()));
                }
            }
            // Cancel-safe: mpsc receive loses nothing when dropped.
            Some(r) = outputs.results.recv() => {
                if tx.send(result_message(&r)).await.is_err() {
                    return Ok(Ended::Lost("outbound stream closed".into()));
                }
            }
            // Cancel-safe: mpsc receive loses nothing when dropped.
            Some(p) = outputs.progress.recv() => {
                let m = pb::AgentMessage { body: Some(pb::agent_message::Body::Progress(pb::Progress {
                    command_id: p.command_id, service: p.service, phase: p.phase, message: p.message, at_ms: now_ms(),
                })) };
                // Progress is best-effort: never block the session on it.
                let _ = tx.try_send(m);
            }
            // Cancel-safe: sleeping holds no data.
            _ = tokio::time::sleep_until(next_health) => {
                let now: Vec<Health> = rt.health_now();
                for h in &now {
                    let _ = tx.try_send(health_message(h));
                }
                next_health = Instant::now() + rt.health_period();
            }
            // Cancel-safe: a `Notified` dropped after `notify_one` passes
            // the permit on. A status change is reported at once: the
            // coordinator's rollback waits on it.
            _ = rt.health_changed() => {
                for h in &rt.health_now() {
                    let _ = tx.try_send(health_message(h));
                }
                next_health = Instant::now() + rt.health_period();
            }
            // Cancel-safe: sleeping holds no data.
            _ = tokio::time::sleep_until(silence_deadline) => {
                return Ok(Ended::Lost(format!("nothing heard from the coordinator for {silence_limit:?}")));
            }
            // Cancel-safe: sleeping holds no data; the renewal starts only when it fires.
            _ = tokio::time::sleep_until(renew_at), if pending.is_none() => {
                let key = pki::generate_key().map_err(IdentityError::from)?;
                let csr = pki::make_csr(&key).map_err(IdentityError::from)?;
                let msg = pb::AgentMessage { body: Some(pb::agent_message::Body::Renew(pb::RenewRequest { csr_der: csr })) };
                if tx.send(msg).await.is_err() {
                    return Ok(Ended::Lost("outbound stream closed".into()));
                }
                tracing::info!("renewing the host certificate");
                pending = Some(PendingRenewal { key, sent: Instant::now() });
            }
            // Cancel-safe: sleeping holds no data; the collection starts only when it fires.
            _ = sleep_until_some(tickets_due), if collecting.is_none() => {
                tickets_due = None;
                collecting = Some(Box::pin(collect_tickets(files, tickets, url, opts)));
            }
            // Cancel-safe: polled through `&mut`, the collection is kept until it ends.
            r = async { collecting.as_mut().expect("guarded").await }, if collecting.is_some() => {
                collecting = None;
                collect_failures = match r {
                    Ok(n) if n > 0 => 0,
                    _ => collect_failures.saturating_add(1),
                };
                let retry = tls::ticket_retry_after(ticket_lifetime, collect_failures, rand::random());
                tickets_due = match r {
                    Ok(n) if n > 0 => {
                        tracing::info!(tickets = n, "collected fresh session tickets");
                        tls::ticket_refresh_after(ticket_lifetime, rand::random())
                    }
                    Ok(_) => {
                        tracing::warn!(retry = ?retry, "the coordinator sent no session tickets");
                        Some(retry)
                    }
                    // A certificate expired on disk gets no tickets; the
                    // session's end will say the same.
                    Err(e @ SessionError::Expired { .. }) => {
                        tracing::error!(error = %e, "not collecting session tickets");
                        None
                    }
                    Err(e @ SessionError::Identity(_)) => {
                        tracing::error!(error = %error_chain(&e), retry = ?retry, "cannot collect session tickets");
                        Some(retry)
                    }
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), retry = ?retry, "cannot collect session tickets");
                        Some(retry)
                    }
                }
                .map(|d| Instant::now() + d);
            }
            // Cancel-safe: `Streaming::message` keeps partial frames in the stream.
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(Ended::Lost("the coordinator closed the session".into())),
                    Err(s) => return Ok(Ended::Lost(format!("{}: {}", s.code(), tls::status_detail(&s)))),
                };
                last_heard = Instant::now();
                use pb::coordinator_message::Body;
                match m.body {
                    Some(Body::Renewed(r)) => {
                        let Some(p) = pending.take() else {
                            tracing::warn!("ignoring a certificate that was not asked for");
                            continue;
                        };
                        match accept_renewal(files, host_id, &r.certificate_pem, &p.key) {
                            Ok(window) => {
                                cert_window = window;
                                renew_at = instant_of(renew_time(cert_window.0, cert_window.1, cfg.renew_at));
                                // The tickets in hand carry the old
                                // certificate; the next connection shows
                                // the new one in a full handshake, so one
                                // is made now, spread over up to a minute.
                                if !ticket_lifetime.is_zero() {
                                    collecting = None;
                                    let spread = renew_at
                                        .saturating_duration_since(Instant::now())
                                        .div_f64(4.0)
                                        .min(Duration::from_secs(60));
                                    tickets_due = Some(Instant::now() + spread.mul_f64(rand::random()));
                                }
                                tracing::info!(
                                    not_after = %humantime::format_rfc3339_seconds(cert_window.1),
                                    "host certificate renewed"
                                );
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "renewed certificate rejected");
                                renew_at = Instant::now() + Duration::from_secs(5);
                            }
                        }
                    }
                    Some(Body::Refusal(r)) => {
                        tracing::warn!(reason = %r.reason, "the coordinator refused a request");
                        if pending.take().is_some() {
                            renew_at = Instant::now() + Duration::from_secs(5);
                        }
                    }
                    Some(Body::Command(c)) => {
                        let (id, deployment) = (c.command_id.clone(), c.deployment_id.clone());
                        match crate::command::Command::try_from(c) {
                            Ok(cmd) => {
                                let (rt, tx) = (rt.clone(), tx.clone());
                                tokio::spawn(async move {
                                    let r = rt.submit(cmd).await;
                                    if tx.send(result_message(&r)).await.is_err() {
                                        // The session that brought it has
                                        // ended: the live one sends it.
                                        rt.deliver_later(r);
                                    }
                                });
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "refusing an invalid command");
                                // Named with its deployment, so that the
                                // rollout hears of it at once.
                                let r = crate::command::CommandResult {
                                    command_id: id,
                                    deployment_id: deployment,
                                    ok: false,
                                    message: e.to_string(),
                                    service: String::new(),
                                    active_release: String::new(),
                                    previous_release: String::new(),
                                    hooks: vec![],
                                    finished_at_ms: now_ms(),
                                    pid: 0,
                                    drained: false,
                                    failure: Some(cutover_common::failure::Failure::Invalid),
                                    staged: Vec::new(),
                                };
                                let _ = tx.send(result_message(&r)).await;
                            }
                        }
                    }
                    Some(Body::Ack(a)) => rt.ack(&a.command_id),
                    Some(Body::Logs(req)) => {
                        logs.retain(|_, t| !t.is_cancelled());
                        if logs.len() >= MAX_LOG_REQUESTS {
                            let m = pb::AgentMessage { body: Some(pb::agent_message::Body::Logs(pb::LogChunk {
                                request_id: req.request_id,
                                lines: vec![],
                                done: true,
                                error: format!("{MAX_LOG_REQUESTS} log requests are being answered on this host already"),
                            })) };
                            let _ = tx.try_send(m);
                            continue;
                        }
                        let token = logs_session.child_token();
                        logs.insert(req.request_id.clone(), token.clone());
                        let (services, tx) = (cfg.state_dir.join("services"), tx.clone());
                        tokio::spawn(async move {
                            crate::logs::serve(services, req, tx, token.clone()).await;
                            // Done: forgotten at the next request.
                            token.cancel();
                        });
                    }
                    Some(Body::CancelLogs(c)) => {
                        if let Some(t) = logs.remove(&c.request_id) {
                            t.cancel();
                        }
                    }
                    Some(Body::Heartbeat(_)) | Some(Body::Welcome(_)) | None => {}
                }
            }
        }
        if let Some(p) = &pending
            && p.sent.elapsed() > Duration::from_secs(30)
        {
            tracing::warn!("certificate renewal got no answer in 30s; will retry");
            pending = None;
            renew_at = Instant::now();
        }
    }
}

/// A connection collecting fresh session tickets, beside the session.
type TicketCollection<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, SessionError>> + Send + 'a>>;

/// Sleeps until `t`, or forever without one.
async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Collects fresh session tickets with the identity on disk now (after a
/// renewal, the new certificate: a full handshake, then tickets for it).
async fn collect_tickets(
    files: &IdentityFiles,
    tickets: &tls::SessionTickets,
    url: &str,
    opts: ChannelOptions,
) -> Result<u32, SessionError> {
    let identity = files.tls_identity()?;
    let info = identity.info().map_err(IdentityError::from)?;
    if info.not_after <= SystemTime::now() {
        return Err(SessionError::Expired {
            at: humantime::format_rfc3339_seconds(info.not_after).to_string(),
        });
    }
    let ca = files.ca_certs()?;
    let cfg = tls::resuming_client_config(&ca, &identity, tickets)?;
    Ok(tls::collect_tickets(url, cfg, opts).await?)
}

/// Checks a renewed certificate and stores it with its key. Returns its
/// validity window.
fn accept_renewal(
    files: &IdentityFiles,
    host_id: &str,
    cert_pem: &str,
    key: &HostKey,
) -> Result<(SystemTime, SystemTime), String> {
    let der = pki::cert_der_from_pem(cert_pem, "renewal").map_err(|e| e.to_string())?;
    let info = cutover_common::identity::cert_info(&der).map_err(|e| e.to_string())?;
    if info.identity != Identity::Host(host_id.into()) {
        return Err(format!(
            "certificate is for {} instead of host:{host_id}",
            info.identity
        ));
    }
    if !pki::cert_matches_key(&der, key) {
        return Err("certificate does not match the new key".into());
    }
    files
        .replace_bundle(cert_pem, key)
        .map_err(|e| error_chain(&e))?;
    Ok((info.not_before, info.not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_at_the_configured_fraction_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let end = start + Duration::from_secs(3000);
        assert_eq!(
            renew_time(start, end, 2.0 / 3.0),
            start + Duration::from_secs(2000)
        );
    }

    #[test]
    fn a_session_call_cut_off_is_broken_and_a_refusal_says_so() {
        let cut = SessionError::from_status(tonic::Status::unavailable("transport error"));
        assert!(matches!(cut, SessionError::Broken(_)), "{cut:?}");
        assert_eq!(
            cut.to_string(),
            "the session broke: the call ended before the coordinator answered (transport error)"
        );
        let refused = SessionError::from_status(tonic::Status::permission_denied(
            "host `web-1` is not enrolled with this coordinator (was it removed?)",
        ));
        assert_eq!(
            refused.to_string(),
            "the coordinator refused the session: host `web-1` is not enrolled with this coordinator (was it removed?)"
        );
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    fn standby(leader: Option<&str>) -> SessionError {
        SessionError::Standby {
            message: "this coordinator is a standby".into(),
            leader: leader.map(str::to_string),
        }
    }

    #[test]
    fn coordinators_are_tried_in_turn_a_named_leader_next_and_a_dead_one_not_twice() {
        let mut t = Targets::new(vec![
            "https://a".into(),
            "https://b".into(),
            "https://c".into(),
        ]);
        assert_eq!(t.pick(), "https://a");
        // a is down: b at once.
        assert!(t.failed(&SessionError::Broken("refused".into())));
        assert_eq!(t.pick(), "https://b");
        // b is a standby naming a (its lease has not run out): a at once.
        assert!(t.failed(&standby(Some("https://a"))));
        assert_eq!(t.pick(), "https://a");
        // a is still down: the round is over, back off.
        assert!(!t.failed(&SessionError::Broken("refused".into())));
        assert_eq!(t.pick(), "https://c");
        // c names a again: not run to again; the next in turn at once.
        assert!(t.failed(&standby(Some("https://a"))));
        assert_eq!(t.pick(), "https://a", "a's turn in the list");
        assert!(t.failed(&SessionError::Broken("refused".into())));
        assert_eq!(t.pick(), "https://b");
        // b leads now.
        t.worked("https://b");
        // A standby naming no leader: the next in turn, then back off.
        let mut t = Targets::new(vec!["https://a".into(), "https://b".into()]);
        assert_eq!(t.pick(), "https://a");
        assert!(t.failed(&standby(None)));
        assert_eq!(t.pick(), "https://b");
        assert!(!t.failed(&standby(None)), "a round done: back off");
        // One coordinator: always it, backing off after each failure; a
        // standby's leader at once.
        let mut t = Targets::new(vec!["https://a".into()]);
        assert_eq!(t.pick(), "https://a");
        assert!(!t.failed(&SessionError::Broken("x".into())));
        assert_eq!(t.pick(), "https://a");
        assert!(t.failed(&standby(Some("https://z"))));
        assert_eq!(t.pick(), "https://z");
    }
}
