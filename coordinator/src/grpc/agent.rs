//! `AgentService.Session`: the long-lived stream each enrolled agent keeps
//! open. The first message must be a `Hello` for the host named in the
//! client certificate; after that the coordinator answers heartbeats,
//! renews the host certificate on request, and watches for silence.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cutover_common::identity::Identity;
use cutover_common::labels::{self, Labels};
use cutover_common::time::now_ms;
use cutover_proto::v1 as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::app::{App, ms};
use crate::fleet::{HelloInfo, SessionHandle};
use crate::grpc::auth::{PeerInfo, peer};
use crate::store::{self, Audit, HostFacts, HostRecord, Outcome};

/// The largest fencing epoch a host may report in `Hello` (2^40
/// deployments); larger ones are ignored.
const MAX_REPORTED_EPOCH: u64 = 1 << 40;

/// How long a new session may take to send its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent session service.
#[derive(Debug, Clone)]
pub struct AgentSvc {
    pub app: Arc<App>,
    /// Cancelled when the coordinator shuts down.
    pub shutdown: CancellationToken,
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

impl AgentSvc {
    async fn refuse(&self, peer: &PeerInfo, target: &str, status: Status) -> Status {
        self.app
            .audit(Audit {
                actor: peer.actor(),
                action: "session.open",
                target: target.into(),
                outcome: Outcome::Denied,
                detail: status.message().into(),
            })
            .await;
        status
    }
}

/// What one host may send. A compromised host can lie about itself, but
/// it cannot make the coordinator hold, store or serve more than this for
/// it, so other hosts and every operator's `cutover hosts` stay unharmed.
pub mod bounds {
    /// Largest health report kept, encoded.
    pub const HEALTH_REPORT_BYTES: usize = 16 * 1024;
    /// Services one host may report.
    pub const SERVICES: usize = 128;
    /// Labels a host may assert for itself.
    pub const LABELS: usize = 32;
    /// Results carried in a Hello (a journal's unacknowledged backlog).
    pub const UNACKED_RESULTS: usize = 2048;
    /// Longest message of a result or progress event kept.
    pub const MESSAGE: usize = 4096;
    /// Longest other free-text field kept (facts, versions, phases).
    pub const FIELD: usize = 256;
    /// Hook outcomes kept per result.
    pub const HOOKS: usize = 32;
}

/// Label keys a host may never set for itself: the token's to bind.
/// Selecting by environment gates production; a host asserting
/// `environment=production` must not be targeted as one.
pub const RESERVED_LABELS: &[&str] = &["environment"];

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        *s = cutover_common::truncate_for_display(s, max);
    }
}

/// A command result cut to its bounds.
fn bounded_result(mut r: pb::CommandResult) -> pb::CommandResult {
    cut(&mut r.message, bounds::MESSAGE);
    for f in [
        &mut r.command_id,
        &mut r.service,
        &mut r.active_release,
        &mut r.previous_release,
        &mut r.deployment_id,
    ] {
        cut(f, bounds::FIELD);
    }
    r.hooks.truncate(bounds::HOOKS);
    for h in &mut r.hooks {
        cut(&mut h.name, bounds::FIELD);
        cut(&mut h.status, bounds::FIELD);
        cut(&mut h.output, bounds::MESSAGE);
    }
    r
}

/// Why a health report is not kept, if it is not.
fn check_health(h: &pb::HealthReport) -> Result<(), String> {
    use prost::Message;
    let len = h.encoded_len();
    if len > bounds::HEALTH_REPORT_BYTES {
        return Err(format!(
            "health report of {len} bytes is over the {} a host may send",
            bounds::HEALTH_REPORT_BYTES
        ));
    }
    cutover_common::identity::check_name(&h.service)
        .map_err(|e| format!("health report service: {e}"))?;
    Ok(())
}

/// How far past this leader's term a host's reported term is believed (a
/// host cannot push the term anywhere near overflow).
const MAX_TERM_AHEAD: u64 = 100_000;

fn hello_info(h: &pb::Hello, peer: &PeerInfo) -> Result<HelloInfo, String> {
    if h.labels.len() > bounds::LABELS {
        return Err(format!(
            "Hello.labels: {} labels, more than the {} a host may set",
            h.labels.len(),
            bounds::LABELS
        ));
    }
    if h.services.len() > bounds::SERVICES {
        return Err(format!(
            "Hello.services: {} services, more than the {} a host may run",
            h.services.len(),
            bounds::SERVICES
        ));
    }
    if h.unacked_results.len() > bounds::UNACKED_RESULTS {
        return Err(format!(
            "Hello.unacked_results: {}, more than {}",
            h.unacked_results.len(),
            bounds::UNACKED_RESULTS
        ));
    }
    for s in &h.services {
        cutover_common::identity::check_name(&s.service)
            .map_err(|e| format!("Hello.services: {e}"))?;
    }
    if let Err(e) = super::enroll::check_agent_version(&h.agent_version) {
        return Err(format!("Hello.agent_version: {e}"));
    }
    if h.capabilities.len() > 64
        || h.capabilities.iter().any(|c| {
            c.is_empty()
                || c.len() > 64
                || !c
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
    {
        return Err(
            "Hello.capabilities: expected at most 64 names of 1 to 64 characters of a-z, 0-9, `.`, `_`, `-`".into(),
        );
    }
    let mut agent_labels: Labels = h.labels.clone().into_iter().collect();
    labels::check_all(&agent_labels).map_err(|e| format!("Hello.labels: {e}"))?;
    for key in RESERVED_LABELS {
        if agent_labels.remove(*key).is_some() {
            tracing::warn!(
                peer = ?peer.addr, label = key,
                "a host set a label only its join token may bind; ignored"
            );
        }
    }
    let mut f = h.facts.clone().unwrap_or_default();
    for s in [&mut f.hostname, &mut f.os, &mut f.kernel, &mut f.arch] {
        cut(s, bounds::FIELD);
    }
    let mut boot_id = h.boot_id.clone();
    cut(&mut boot_id, 64);
    Ok(HelloInfo {
        capabilities: h.capabilities.clone(),
        // Deployment numbers, not arbitrary values: a host cannot push the
        // next deployment's number anywhere near overflow.
        newest_epoch: if h.newest_epoch <= MAX_REPORTED_EPOCH {
            h.newest_epoch
        } else {
            tracing::warn!(peer = ?peer.addr, epoch = h.newest_epoch, "a host reported an impossible fencing epoch; ignored");
            0
        },
        agent_version: h.agent_version.clone(),
        agent_labels,
        boot_id,
        facts: HostFacts {
            hostname: f.hostname,
            cpus: f.cpus,
            memory_bytes: f.memory_bytes,
            os: f.os,
            kernel: f.kernel,
            arch: f.arch,
        },
        address: peer.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
    })
}

async fn persist(app: &App, rec: HostRecord) {
    if let Err(e) = app.store.write(store::BatchedWrite::Host(rec)).await {
        tracing::error!(error = %cutover_common::error_chain(&e), "persisting host state failed");
    }
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentSvc {
    type SessionStream = OutStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = peer(&req);
        let cert_host = match &peer.identity {
            Some(Identity::Host(h)) => h.clone(),
            Some(other) => {
                let s = Status::permission_denied(format!(
                    "{other} is not a host: sessions need a host certificate"
                ));
                return Err(self.refuse(&peer, "", s).await);
            }
            None => {
                let s = Status::unauthenticated(
                    "no client certificate: enroll this host first (`cutover-agent enroll`)",
                );
                return Err(self.refuse(&peer, "", s).await);
            }
        };
        let mut inbound = req.into_inner();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Err(Status::cancelled("stream closed before Hello")),
            Ok(Err(s)) => return Err(s),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10s")),
        };
        let Some(pb::agent_message::Body::Hello(hello)) = first.body else {
            let s = Status::invalid_argument("the first message of a session must be Hello");
            return Err(self.refuse(&peer, &cert_host, s).await);
        };
        if hello.host_id != cert_host {
            let s = Status::permission_denied(format!(
                "certificate of host `{cert_host}` cannot speak for host `{}`",
                hello.host_id
            ));
            return Err(self.refuse(&peer, &hello.host_id, s).await);
        }
        let info = match hello_info(&hello, &peer) {
            Ok(i) => i,
            Err(e) => {
                return Err(self
                    .refuse(&peer, &cert_host, Status::invalid_argument(e))
                    .await);
            }
        };
        // The fleet has seen a newer leader term than this leader's: the
        // store is older than the fleet (restored from a backup). Agents
        // would refuse every command; the term moves past theirs and this
        // coordinator steps down (the next leader takes a newer term).
        if let Some(l) = &self.app.leadership
            && hello.newest_term > l.term
            && hello.newest_term <= l.term + MAX_TERM_AHEAD
        {
            crate::leader::behind_the_fleet(&self.app, &cert_host, hello.newest_term).await;
            return Err(Status::unavailable(
                "this coordinator's leader term is older than this host's: it is stepping down; try again",
            ));
        }
        let peer_address = info.address.clone();
        let session_id = hex::encode(rand::random::<[u8; 8]>());
        let (tx, rx) = mpsc::channel::<Box<pb::CoordinatorMessage>>(64);
        let cancel = self.shutdown.child_token();
        let handle = SessionHandle {
            id: session_id.clone(),
            tx: tx.clone(),
            cancel: cancel.clone(),
        };
        let (record, labels) = match self.app.fleet.session_opened(
            &cert_host,
            &peer.cert_serial,
            handle,
            info,
            now_ms(),
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(host = %cert_host, peer = ?peer.addr, reason = %e, "host session refused");
                let s = Status::permission_denied(format!("host `{cert_host}`: {e}"));
                return Err(self.refuse(&peer, &cert_host, s).await);
            }
        };
        if let Some(record) = record {
            persist(&self.app, record).await;
        }
        self.app
            .fleet
            .set_services(&cert_host, hello.services.clone());
        let unacked: Vec<pb::CommandResult> = hello.unacked_results;
        tracing::info!(
            host = %cert_host, session = %session_id, agent_version = %hello.agent_version,
            address = %peer_address, "host session opened"
        );
        let welcome = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(pb::Welcome {
                session_id: session_id.clone(),
                heartbeat_interval_ms: self.app.cfg.heartbeat_interval.as_millis() as u64,
                host_timeout_ms: self.app.cfg.host_timeout.as_millis() as u64,
                server_time_ms: now_ms(),
                labels: labels.into_iter().collect(),
                session_ticket_lifetime_ms: self.app.cfg.session_ticket_lifetime.as_millis() as u64,
                leader_term: self.app.term(),
            })),
        };
        // The channel is new and empty: this cannot fail for lack of room.
        let _ = tx.try_send(Box::new(welcome));
        tokio::spawn(run_session(
            self.app.clone(),
            Speaker {
                host: cert_host,
                session_id,
                cert_serial: peer.cert_serial.clone(),
            },
            inbound,
            tx,
            cancel,
            unacked,
        ));
        let out: OutStream = Box::pin(ReceiverStream::new(rx).map(|m| Ok(*m)));
        Ok(Response::new(out))
    }
}

fn msg(body: pb::coordinator_message::Body) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { body: Some(body) }
}

/// Serves one accepted session until the agent goes away, a newer session
/// replaces it, the host is marked lost, or the coordinator shuts down.
/// Who a session speaks for: its host, its id, and the certificate it
/// was opened with (a renewal on it records that one as the previous).
struct Speaker {
    host: String,
    session_id: String,
    cert_serial: String,
}

async fn run_session(
    app: Arc<App>,
    speaker: Speaker,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: crate::fleet::SessionTx,
    cancel: CancellationToken,
    unacked: Vec<pb::CommandResult>,
) {
    let Speaker {
        host,
        session_id,
        cert_serial,
    } = speaker;
    // Results the agent kept while disconnected: store and ack each (the
    // response stream is being read by now, so sends cannot deadlock).
    for r in unacked {
        if let Some(ack) = Box::pin(record_result(&app, &host, r)).await
            && tx.send(Box::new(ack)).await.is_err()
        {
            return;
        }
    }
    let mut heartbeat = tokio::time::interval(app.cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let reason = loop {
        tokio::select! {
            // Cancel-safe: a token wait holds no data.
            _ = cancel.cancelled() => break "closed by coordinator",
            // Cancel-safe: interval ticks are not lost by being dropped.
            _ = heartbeat.tick() => {
                let hb = msg(pb::coordinator_message::Body::Heartbeat(pb::Heartbeat { sent_at_ms: now_ms() }));
                if tx.send(Box::new(hb)).await.is_err() {
                    break "agent stopped reading";
                }
            }
            // Cancel-safe: `Streaming::message` keeps partial frames in the stream.
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    if let Some(rec) = app.fleet.heard(&host, &session_id, now_ms()) {
                        tracing::info!(host = %host, "host is back");
                        Box::pin(persist(&app, rec)).await;
                    }
                    // Boxed, like the other awaits here: the task lives as
                    // long as the session, and an inline future would make
                    // it as large as the largest one, for every agent.
                    if let Some(reply) = Box::pin(handle(&app, &host, &cert_serial, m)).await
                        && tx.send(Box::new(reply)).await.is_err()
                    {
                        break "agent stopped reading";
                    }
                }
                Ok(None) => break "agent closed the session",
                Err(_) => break "session stream failed",
            }
        }
    };
    // `cutover logs` readers waiting for this host hear it is gone.
    app.logs.host_gone(&host);
    if let Some(rec) = app.fleet.session_closed(&host, &session_id) {
        Box::pin(persist(&app, rec)).await;
    }
    tracing::info!(host = %host, session = %session_id, reason, "host session closed");
}

/// Stores a command result, hands it to whoever waits, and acks it.
pub(crate) async fn record_result(
    app: &App,
    host: &str,
    r: pb::CommandResult,
) -> Option<pb::CoordinatorMessage> {
    let r = bounded_result(r);
    let (h, id, ok, message) = (
        host.to_string(),
        r.command_id.clone(),
        r.ok,
        r.message.clone(),
    );
    let json = serde_json::json!({
        "service": r.service, "active_release": r.active_release, "previous_release": r.previous_release,
        "hooks": r.hooks.iter().map(|x| serde_json::json!({"name": x.name, "ok": x.ok, "status": x.status})).collect::<Vec<_>>(),
    })
    .to_string();
    let finished = r.finished_at_ms;
    let w = store::BatchedWrite::CommandResult {
        host: h,
        id,
        ok,
        message,
        result_json: json,
        finished_at: finished,
    };
    if let Err(e) = app.store.write(w).await {
        // Not acked: the agent will send it again.
        tracing::error!(error = %cutover_common::error_chain(&e), "storing a command result failed");
        return None;
    }
    tracing::info!(host, command = %r.command_id, ok = r.ok, "{}", r.message);
    if !r.ok && r.message.contains(cutover_common::REUSED_COMMAND_ID) {
        app.audit(Audit {
            actor: format!("host:{host}"),
            action: "command.reused_id",
            target: r.command_id.clone(),
            outcome: Outcome::Denied,
            detail: r.message.clone(),
        })
        .await;
    }
    app.fleet.apply_result(host, &r);
    let ack = pb::Ack {
        command_id: r.command_id.clone(),
    };
    app.commands.result(host, r);
    Some(msg(pb::coordinator_message::Body::Ack(ack)))
}

async fn handle(
    app: &App,
    host: &str,
    cert_serial: &str,
    m: pb::AgentMessage,
) -> Option<pb::CoordinatorMessage> {
    use pb::agent_message::Body;
    match m.body? {
        Body::Heartbeat(_) => None,
        Body::Hello(_) => Some(msg(pb::coordinator_message::Body::Refusal(pb::Refusal {
            reason: "Hello is only valid as the first message of a session".into(),
        }))),
        Body::Result(r) => record_result(app, host, r).await,
        Body::Logs(c) => {
            app.logs.deliver(host, c);
            None
        }
        Body::Progress(mut p) => {
            cut(&mut p.message, bounds::MESSAGE);
            for f in [&mut p.command_id, &mut p.service, &mut p.phase] {
                cut(f, bounds::FIELD);
            }
            app.commands.progress(host, p);
            None
        }
        Body::Health(h) => {
            if let Err(e) = check_health(&h) {
                tracing::warn!(host = %host, reason = %e, "health report refused");
                return Some(msg(pb::coordinator_message::Body::Refusal(pb::Refusal {
                    reason: format!("health report refused: {e}"),
                })));
            }
            if !app.fleet.set_health(host, h, bounds::SERVICES) {
                return Some(msg(pb::coordinator_message::Body::Refusal(pb::Refusal {
                    reason: format!(
                        "health report refused: this host already reports {} services",
                        bounds::SERVICES
                    ),
                })));
            }
            None
        }
        Body::Renew(r) => match app.sign_host_csr(host, &r.csr_der) {
            Ok((pem, info)) => {
                if let Some(rec) =
                    app.fleet
                        .renewed(host, cert_serial, info.serial.clone(), ms(info.not_after))
                {
                    persist(app, rec).await;
                }
                tracing::info!(host = %host, serial = %info.serial, "host certificate renewed");
                Some(msg(pb::coordinator_message::Body::Renewed(
                    pb::RenewResponse {
                        certificate_pem: pem,
                    },
                )))
            }
            Err(e) => {
                tracing::warn!(host = %host, error = %e, "certificate renewal refused");
                Some(msg(pb::coordinator_message::Body::Refusal(pb::Refusal {
                    reason: format!("renewal refused: {e}"),
                })))
            }
        },
    }
}

#[cfg(test)]
mod fuzz {
    //! What a host (perhaps compromised) sends, decoded from arbitrary
    //! bytes: never a panic, and what is kept stays within [`bounds`].
    //! `fuzz_*`: see bench/fuzz.sh for long runs.
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    fn peer() -> PeerInfo {
        PeerInfo {
            addr: Some("198.18.0.1:5000".parse().unwrap()),
            identity: None,
            cert_not_after: None,
            cert_serial: "01".into(),
        }
    }

    proptest! {
        #[test]
        fn fuzz_agent_messages_decode_and_are_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let Ok(m) = pb::AgentMessage::decode(&bytes[..]) else { return Ok(()) };
            match m.body {
                Some(pb::agent_message::Body::Hello(h)) => {
                    if let Ok(info) = hello_info(&h, &peer()) {
                        prop_assert!(info.agent_labels.len() <= bounds::LABELS);
                        prop_assert!(!info.agent_labels.contains_key("environment"));
                        prop_assert!(info.facts.hostname.len() <= bounds::FIELD + 32);
                    }
                }
                Some(pb::agent_message::Body::Health(h)) if check_health(&h).is_ok() => {
                    prop_assert!(h.encoded_len() <= bounds::HEALTH_REPORT_BYTES);
                }
                Some(pb::agent_message::Body::Result(r)) => {
                    let r = bounded_result(r);
                    prop_assert!(r.message.len() <= bounds::MESSAGE + 32);
                    prop_assert!(r.hooks.len() <= bounds::HOOKS);
                }
                _ => {}
            }
        }

        #[test]
        fn fuzz_a_hello_with_long_fields_is_cut_or_refused(
            s in "\\PC{0,2000}",
            n in 0usize..300,
        ) {
            let h = pb::Hello {
                host_id: s.clone(),
                agent_version: s.clone(),
                labels: (0..n).map(|i| (format!("k{i}"), s.clone())).collect(),
                facts: Some(pb::HostFacts { hostname: s.clone(), os: s.clone(), ..Default::default() }),
                ..Default::default()
            };
            if let Ok(info) = hello_info(&h, &peer()) {
                prop_assert!(info.agent_labels.len() <= bounds::LABELS);
                prop_assert!(info.facts.hostname.len() <= bounds::FIELD + 32);
            }
        }
    }
}
