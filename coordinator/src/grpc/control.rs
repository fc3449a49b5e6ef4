//! `ControlService`: what the `cutover` command calls. Every call needs an
//! operator certificate; mutating calls check the role and are audited.

use std::sync::Arc;
use std::time::Duration;

use cutover_common::labels::{self, Labels, Selector};
use cutover_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::app::{App, ms};
use crate::fleet::HostView;
use crate::grpc::auth::{Role, authorize};
use crate::store::{self, Audit, Outcome};

/// The control service.
#[derive(Debug, Clone)]
pub struct ControlSvc {
    pub app: Arc<App>,
}

/// Hosts drifted, by service, across the fleet: what `cutover hosts`
/// shows in DRIFT, counted (for `cutover_hosts_drifted`).
pub async fn drift_by_service(
    app: &App,
) -> Result<std::collections::BTreeMap<String, i64>, store::StoreError> {
    let mut hosts: Vec<pb::HostInfo> = app
        .fleet
        .list(&Selector::default())
        .into_iter()
        .map(host_info)
        .collect();
    add_drift(app, &mut hosts).await?;
    let mut out = std::collections::BTreeMap::new();
    for h in &hosts {
        for s in &h.services {
            let n = out.entry(s.service.clone()).or_insert(0);
            if !s.drift.is_empty() {
                *n += 1;
            }
        }
    }
    Ok(out)
}

/// Fills in each service's drift: what its agent reports (files changed in
/// the release), and a release other than the one Cutover left there.
async fn add_drift(app: &App, hosts: &mut [pb::HostInfo]) -> Result<(), store::StoreError> {
    let services: std::collections::BTreeSet<String> = hosts
        .iter()
        .flat_map(|h| h.services.iter().map(|s| s.service.clone()))
        .collect();
    for h in hosts.iter_mut() {
        for s in &mut h.services {
            s.drift = s
                .health
                .as_ref()
                .map(|x| x.drift.clone())
                .unwrap_or_default();
        }
    }
    for svc in services {
        let name = svc.clone();
        let rows = app
            .store
            .call(move |c| store::list_deployments(c, &name, 200))
            .await?;
        // Parsed lazily, newest first: most hosts are settled by the
        // newest deployment.
        let rollouts = rows
            .iter()
            .filter_map(|d| serde_json::from_str::<crate::engine::Rollout>(&d.rollout_json).ok());
        // Only hosts that are here to say what they run.
        let reported: std::collections::BTreeMap<String, Option<String>> = hosts
            .iter()
            .filter(|h| h.state == "ready")
            .map(|h| {
                let runs = h
                    .services
                    .iter()
                    .find(|s| s.service == svc)
                    .map(|s| s.active_release.clone())
                    .filter(|r| !r.is_empty());
                (h.host_id.clone(), runs)
            })
            .collect();
        let off = crate::drift::mismatches(rollouts, &reported);
        for h in hosts.iter_mut() {
            let Some(line) = off.get(&h.host_id) else {
                continue;
            };
            if !h.services.iter().any(|s| s.service == svc) {
                h.services.push(pb::HostService {
                    service: svc.clone(),
                    ..Default::default()
                });
            }
            if let Some(s) = h.services.iter_mut().find(|s| s.service == svc) {
                s.drift.insert(0, line.clone());
            }
        }
    }
    Ok(())
}

fn host_info(v: HostView) -> pb::HostInfo {
    let r = v.record;
    let labels = r.labels();
    pb::HostInfo {
        host_id: r.id,
        labels: labels.into_iter().collect(),
        state: v.state.as_str().into(),
        last_seen_ms: r.last_seen.unwrap_or(0),
        agent_version: r.agent_version,
        address: r.address,
        facts: Some(pb::HostFacts {
            hostname: r.facts.hostname,
            cpus: r.facts.cpus,
            memory_bytes: r.facts.memory_bytes,
            os: r.facts.os,
            kernel: r.facts.kernel,
            arch: r.facts.arch,
        }),
        enrolled_at_ms: r.enrolled_at,
        certificate_not_after_ms: r.cert_not_after,
        boot_id: r.boot_id,
        session_id: v.session_id.unwrap_or_default(),
        services: v.services,
        recent_commands: Vec::new(),
    }
}

/// The role an operator needs to send a command of this kind. Drain,
/// undrain, stop and hooks are a deployer's everyday host actions; stage,
/// activate and rollback on one host bypass rollouts (no plan, no health
/// gate, no record in a deployment), so only an admin may.
fn operator_command_role(k: &pb::command::Kind) -> Role {
    use pb::command::Kind as K;
    match k {
        K::Drain(_) | K::Undrain(_) | K::Stop(_) | K::RunHook(_) => Role::Deployer,
        K::Stage(_) | K::Activate(_) | K::Rollback(_) => Role::Admin,
    }
}

/// Prefix of every command id an operator's command gets: rollouts' ids
/// (`d<N>-...`) can never be named, so an operator cannot answer or
/// replay a rollout's step.
pub const OPERATOR_COMMAND_PREFIX: &str = "op-";

/// The command an operator's `SendCommand` sends to the agent, or what is
/// wrong with the request. The coordinator assigns the id (the caller's
/// own id, for retries, is namespaced under [`OPERATOR_COMMAND_PREFIX`])
/// and the fencing epoch (0: an operator's action is not part of a
/// rollout's sequence); the caller may set neither epoch nor deployment.
pub fn operator_command(r: &pb::SendCommandRequest) -> Result<pb::Command, String> {
    if let Err(e) = cutover_common::identity::check_name(&r.host_id) {
        return Err(format!("host_id: {e}"));
    }
    let mut cmd = r
        .command
        .clone()
        .ok_or_else(|| "command: expected a command".to_string())?;
    let Some(kind) = cmd.kind.as_ref() else {
        return Err(
            "command.kind: expected one of stage, activate, rollback, drain, undrain, stop, run_hook"
                .into(),
        );
    };
    let service = crate::grpc::command_service(kind);
    if let Err(e) = cutover_common::identity::check_name(service) {
        return Err(format!(
            "command.{}.service: {e}",
            crate::commands::kind_name(&cmd)
        ));
    }
    if cmd.epoch != 0 {
        return Err(format!(
            "command.epoch: {} given, but fencing epochs are assigned by the coordinator from its own deployment sequence; leave it 0",
            cmd.epoch
        ));
    }
    if cmd.term != 0 {
        return Err(format!(
            "command.term: {} given, but the leader term is the coordinator's own; leave it 0",
            cmd.term
        ));
    }
    if !cmd.deployment_id.is_empty() {
        return Err(
            "command.deployment_id: an operator's command belongs to no deployment; leave it empty"
                .into(),
        );
    }
    if cmd.step != 0 {
        return Err("command.step: an operator's command has no step; leave it 0".into());
    }
    let own = if cmd.command_id.is_empty() {
        hex::encode(rand::random::<[u8; 8]>())
    } else {
        let id = &cmd.command_id;
        let ok = id.len() <= 48
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "command.command_id: {:?} must be 1 to 48 of a-z, A-Z, 0-9, - and _ (or empty: the coordinator picks one)",
                cutover_common::truncate_for_display(id, 80)
            ));
        }
        id.clone()
    };
    cmd.command_id = format!("{OPERATOR_COMMAND_PREFIX}{own}");
    Ok(cmd)
}

/// A service's output, as it comes from its hosts.
pub type LogStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogEvent, Status>> + Send>>;

/// `cutover logs`: asks each connected host running the service for its
/// output over its session; the lines stream back as they come.
async fn stream_logs(
    app: &Arc<App>,
    req: Request<pb::StreamLogsRequest>,
) -> Result<Response<LogStream>, Status> {
    use futures::StreamExt;
    let op = authorize(app, &req, Role::Viewer, None).await?;
    let r = req.into_inner();
    cutover_common::identity::check_name(&r.service)
        .map_err(|e| Status::invalid_argument(format!("service: {e}")))?;
    let tail = if r.tail_lines == 0 { 100 } else { r.tail_lines };
    if tail > cutover_common::wire::LOGS_MAX_TAIL {
        return Err(Status::invalid_argument(format!(
            "tail_lines: at most {}, found {tail}",
            cutover_common::wire::LOGS_MAX_TAIL
        )));
    }
    let since_ms = r
        .since
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0);
    let views = app.fleet.list(&Selector::default());
    for h in &r.hosts {
        if !views.iter().any(|v| &v.record.id == h) {
            return Err(Status::not_found(format!("host `{h}` is not enrolled")));
        }
    }
    let mut first = Vec::new();
    let mut targets = Vec::new();
    let named = !r.hosts.is_empty();
    for v in &views {
        let host = &v.record.id;
        if named && !r.hosts.contains(host) {
            continue;
        }
        let problem = if !v.services.iter().any(|s| s.service == r.service) {
            if !named {
                continue;
            }
            format!("does not run service `{}`", r.service)
        } else if v.session_id.is_none() {
            "not connected".to_string()
        } else if !app.fleet.capabilities(host).iter().any(|c| c == "logs") {
            "its agent is too old to send logs (no `logs` capability): upgrade it".to_string()
        } else {
            targets.push(host.clone());
            continue;
        };
        first.push(pb::LogEvent {
            host: host.clone(),
            error: problem,
            ..Default::default()
        });
    }
    if targets.is_empty() && first.is_empty() {
        return Err(Status::not_found(format!(
            "no host runs service `{}`",
            r.service
        )));
    }
    if targets.len() > crate::logs::MAX_HOSTS {
        return Err(Status::invalid_argument(format!(
            "{} hosts run `{}`: at most {} at once; name some with --host",
            targets.len(),
            r.service,
            crate::logs::MAX_HOSTS
        )));
    }
    app.audit(Audit {
        actor: format!("operator:{}", op.name),
        action: "logs.read",
        target: r.service.clone(),
        outcome: Outcome::Ok,
        detail: format!(
            "{} host(s){}",
            targets.len(),
            if r.follow { ", following" } else { "" }
        ),
    })
    .await;
    let id = hex::encode(rand::random::<[u8; 8]>());
    let (tx, rx) = tokio::sync::mpsc::channel(crate::logs::BUFFER);
    for e in first {
        let _ = tx.try_send(e);
    }
    app.logs.register(&id, &targets, tx);
    for h in &targets {
        let ask = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Logs(pb::LogsRequest {
                request_id: id.clone(),
                service: r.service.clone(),
                tail_lines: tail,
                since_ms,
                follow: r.follow,
            })),
        };
        let sent = match app.fleet.session_sender(h) {
            Some((_, stx)) => stx.send(Box::new(ask)).await.is_ok(),
            None => false,
        };
        if !sent {
            app.logs.deliver(
                h,
                pb::LogChunk {
                    request_id: id.clone(),
                    done: true,
                    error: "not connected".into(),
                    ..Default::default()
                },
            );
        }
    }
    // When the reader goes away: the hosts stop, the request is forgotten.
    let guard = LogsGuard {
        app: app.clone(),
        id,
        hosts: targets,
        follow: r.follow,
    };
    let s = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |e| {
        let _ = &guard;
        Ok(e)
    });
    Ok(Response::new(Box::pin(s)))
}

struct LogsGuard {
    app: Arc<App>,
    id: String,
    hosts: Vec<String>,
    follow: bool,
}

impl Drop for LogsGuard {
    fn drop(&mut self) {
        self.app.logs.remove(&self.id);
        if !self.follow {
            return;
        }
        let (app, id, hosts) = (
            self.app.clone(),
            self.id.clone(),
            std::mem::take(&mut self.hosts),
        );
        tokio::spawn(async move {
            for h in hosts {
                if let Some((_, tx)) = app.fleet.session_sender(&h) {
                    let m = pb::CoordinatorMessage {
                        body: Some(pb::coordinator_message::Body::CancelLogs(pb::CancelLogs {
                            request_id: id.clone(),
                        })),
                    };
                    let _ = tx.send(Box::new(m)).await;
                }
            }
        });
    }
}

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::CommandEvent, Status>> + Send>>;

/// Follows a command's events until its result, or `timeout`.
fn async_stream_events(
    app: Arc<App>,
    host: String,
    id: String,
    timeout: Duration,
    mut rx: tokio::sync::mpsc::Receiver<pb::command_event::Event>,
) -> EventStream {
    let (tx, out) = tokio::sync::mpsc::channel::<Result<pb::CommandEvent, Status>>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        let done = matches!(ev, pb::command_event::Event::Result(_));
                        if tx.send(Ok(pb::CommandEvent { event: Some(ev) })).await.is_err() || done {
                            break;
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = tx
                        .send(Err(Status::deadline_exceeded(format!(
                            "no result for command {id} within {}; it may still finish on the host",
                            humantime::format_duration(timeout)
                        ))))
                        .await;
                    break;
                }
            }
        }
        app.commands.forget(&host, &id);
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))
}

#[tonic::async_trait]
impl pb::control_service_server::ControlService for ControlSvc {
    type SendCommandStream = EventStream;
    type StreamLogsStream = LogStream;
    type WatchDeploymentStream = crate::grpc::deploy::InfoStream;

    async fn validate_spec(
        &self,
        req: Request<pb::SpecRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        crate::grpc::deploy::validate(&self.app, req).await
    }
    async fn parse_spec(
        &self,
        req: Request<pb::SpecRequest>,
    ) -> Result<Response<pb::ParseSpecResponse>, Status> {
        crate::grpc::deploy::parse(&self.app, req).await
    }
    async fn plan_deployment(
        &self,
        req: Request<pb::SpecRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        crate::grpc::deploy::plan(&self.app, req).await
    }
    async fn submit_deployment(
        &self,
        req: Request<pb::SubmitDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentInfo>, Status> {
        let app = self.app.clone();
        detached(async move { crate::grpc::deploy::submit(&app, req).await }).await
    }
    async fn get_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentInfo>, Status> {
        crate::grpc::deploy::get(&self.app, req).await
    }
    async fn watch_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<Self::WatchDeploymentStream>, Status> {
        crate::grpc::deploy::watch(&self.app, req).await
    }
    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        crate::grpc::deploy::list(&self.app, req).await
    }
    async fn control_deployment(
        &self,
        req: Request<pb::ControlDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentInfo>, Status> {
        let app = self.app.clone();
        detached(async move { crate::grpc::deploy::control(&app, req).await }).await
    }
    async fn rollback_service(
        &self,
        req: Request<pb::RollbackServiceRequest>,
    ) -> Result<Response<pb::DeploymentInfo>, Status> {
        let app = self.app.clone();
        detached(async move { crate::grpc::deploy::rollback_service(&app, req).await }).await
    }
    async fn get_stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        crate::grpc::deploy::stats(&self.app, req).await
    }

    async fn send_command(
        &self,
        req: Request<pb::SendCommandRequest>,
    ) -> Result<Response<EventStream>, Status> {
        // Which role an operator command needs depends on its kind: read
        // it before authorizing (nothing else of the request is used).
        let required = match req.get_ref().command.as_ref().and_then(|c| c.kind.as_ref()) {
            Some(k) => operator_command_role(k),
            None => Role::Deployer,
        };
        let op =
            crate::grpc::auth::authorize_change(&self.app, &req, required, "host.command").await?;
        let r = req.into_inner();
        let cmd = operator_command(&r).map_err(Status::invalid_argument)?;
        let kind = crate::commands::kind_name(&cmd);
        if self.app.fleet.session_sender(&r.host_id).is_none() {
            return Err(Status::failed_precondition(format!(
                "host `{}` has no live session",
                r.host_id
            )));
        }
        // Waiting before it is sent: its result may come back at once.
        let events = self.app.commands.watch(&r.host_id, &cmd.command_id);
        let id = cmd.command_id.clone();
        let detail = format!("{kind} {id}");
        let sent =
            crate::commands::dispatch(&self.app, vec![(r.host_id.clone(), cmd)], &op.peer.actor())
                .await;
        let sent = match sent {
            Ok(s) => s.into_iter().next().flatten(),
            Err(e) => {
                self.app.commands.forget(&r.host_id, &id);
                return Err(Status::internal(format!("store: {e}")));
            }
        };
        if sent.is_none() {
            self.app.commands.forget(&r.host_id, &id);
            return Err(Status::unavailable(format!(
                "the session of host `{}` closed",
                r.host_id
            )));
        }
        self.app
            .audit(Audit {
                actor: op.peer.actor(),
                action: "host.command",
                target: r.host_id.clone(),
                outcome: Outcome::Ok,
                detail,
            })
            .await;
        let timeout = match r.timeout_ms {
            0 => Duration::from_secs(300),
            ms => Duration::from_millis(ms),
        };
        let app = self.app.clone();
        let stream = async_stream_events(app, r.host_id.clone(), id, timeout, events);
        Ok(Response::new(stream))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let op = authorize(&self.app, &req, Role::Viewer, None).await?;
        Ok(Response::new(pb::WhoAmIResponse {
            name: op.name,
            role: op.role.as_str().into(),
            certificate_not_after_ms: op.peer.cert_not_after.map(ms).unwrap_or(0),
        }))
    }

    async fn stream_logs(
        &self,
        req: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        stream_logs(&self.app, req).await
    }

    async fn list_coordinators(
        &self,
        req: Request<pb::ListCoordinatorsRequest>,
    ) -> Result<Response<pb::ListCoordinatorsResponse>, Status> {
        authorize(&self.app, &req, Role::Viewer, None).await?;
        let app = &self.app;
        let Some(l) = app.leadership.clone() else {
            let started = app.started_ms;
            return Ok(Response::new(pb::ListCoordinatorsResponse {
                store: "sqlite".into(),
                term: 0,
                leader_since: Some(super::convert::timestamp(started)),
                coordinators: vec![pb::CoordinatorInfo {
                    name: app.cfg.member_name(),
                    address: app.url.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    leader: true,
                    up: true,
                    started_at: Some(super::convert::timestamp(started)),
                    last_seen: Some(super::convert::timestamp(cutover_common::time::now_ms())),
                }],
            }));
        };
        let (rows, since) = app
            .store
            .call(move |c| {
                use crate::store::Db;
                let since = c
                    .row(
                        "SELECT (extract(epoch FROM since) * 1000)::bigint FROM cutover_leader WHERE id = 1",
                        &[],
                    )?
                    .map(|r| r.get::<i64>(0))
                    .transpose()?;
                Ok((crate::leader::members(c, l.lease, &l.member.holder)?, since))
            })
            .await
            .map_err(|e| Status::internal(format!("store: {}", cutover_common::error_chain(&e))))?;
        Ok(Response::new(pb::ListCoordinatorsResponse {
            store: "postgres".into(),
            term: app.term(),
            leader_since: since.map(super::convert::timestamp),
            coordinators: rows
                .into_iter()
                .map(|m| pb::CoordinatorInfo {
                    name: m.name,
                    address: m.address,
                    version: m.version,
                    leader: m.leader,
                    up: m.up,
                    started_at: Some(super::convert::timestamp(m.started_at_ms)),
                    last_seen: Some(super::convert::timestamp(m.last_seen_ms)),
                })
                .collect(),
        }))
    }

    async fn list_hosts(
        &self,
        req: Request<pb::ListHostsRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        authorize(&self.app, &req, Role::Viewer, None).await?;
        let r = req.get_ref();
        let selector = Selector::parse(&r.selector)
            .map_err(|e| Status::invalid_argument(format!("selector: {e}")))?;
        let page = super::page("hosts", r.page_size, 0, &r.page_token, 500)?;
        if r.recent_commands > 0 && r.host_id.is_empty() {
            return Err(Status::invalid_argument(
                "recent_commands needs host_id (one host's commands)",
            ));
        }
        let mut views = self.app.fleet.list(&selector);
        if !r.host_id.is_empty() {
            views.retain(|v| v.record.id == r.host_id);
        }
        views.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        let views: Vec<_> = views
            .into_iter()
            .filter(|v| page.after.as_ref().is_none_or(|a| &v.record.id > a))
            .take(page.size as usize + 1)
            .collect();
        let (views, next_page_token) = page.finish("hosts", views, |v| v.record.id.clone());
        let mut hosts: Vec<pb::HostInfo> = views.into_iter().map(host_info).collect();
        add_drift(&self.app, &mut hosts)
            .await
            .map_err(|e| Status::internal(format!("store: {e}")))?;
        if r.recent_commands > 0 {
            let limit = r.recent_commands.min(50);
            for h in &mut hosts {
                let id = h.host_id.clone();
                let rows = self
                    .app
                    .store
                    .call(move |c| store::recent_commands(c, &id, limit))
                    .await
                    .map_err(|e| Status::internal(format!("store: {e}")))?;
                h.recent_commands = rows
                    .into_iter()
                    .map(|c| pb::HostCommand {
                        command_id: c.id,
                        kind: c.kind,
                        deployment_id: c.deployment_id,
                        sent_by: c.sent_by,
                        sent_at: Some(super::convert::timestamp(c.sent_at)),
                        outcome: match c.ok {
                            Some(true) => "ok",
                            Some(false) => "failed",
                            None => "pending",
                        }
                        .into(),
                        message: c.message,
                        finished_at: c.finished_at.map(super::convert::timestamp),
                    })
                    .collect();
            }
        }
        Ok(Response::new(pb::ListHostsResponse {
            hosts,
            next_page_token,
        }))
    }

    async fn remove_host(
        &self,
        req: Request<pb::RemoveHostRequest>,
    ) -> Result<Response<pb::RemoveHostResponse>, Status> {
        let app = self.app.clone();
        detached(async move {
            let op =
                crate::grpc::auth::authorize_change(&app, &req, Role::Admin, "host.remove").await?;
            let r = req.into_inner();
            let key = prost::Message::encode_to_vec(&r);
            let call = async {
                let host = r.host_id.clone();
                super::check_name_arg("host_id", &host, true)?;
                let h = host.clone();
                let existed = app
                    .store
                    .call(move |c| store::delete_host(c, &h))
                    .await
                    .map_err(|e| Status::internal(format!("store: {e}")))?;
                app.fleet.remove(&host);
                app.audit(Audit {
                    actor: op.peer.actor(),
                    action: "host.remove",
                    target: host.clone(),
                    outcome: if existed { Outcome::Ok } else { Outcome::Error },
                    detail: if existed {
                        String::new()
                    } else {
                        "no such host".into()
                    },
                })
                .await;
                if !existed {
                    return Err(Status::not_found(format!("no host `{host}`")));
                }
                Ok(pb::RemoveHostResponse {})
            };
            let actor = op.peer.actor();
            super::idempotency::once(&app, &actor, "RemoveHost", &r.request_id, &key, call)
                .await
                .map(Response::new)
        })
        .await
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let app = self.app.clone();
        detached(async move {
            let op = crate::grpc::auth::authorize_change(&app, &req, Role::Admin, "token.create").await?;
            let r = req.into_inner();
            // Canonical: the labels map in key order.
            let key = format!(
                "{} {} {:?}",
                r.ttl_ms,
                r.uses,
                r.labels.iter().collect::<std::collections::BTreeMap<_, _>>()
            )
            .into_bytes();
            let request_id = r.request_id.clone();
            let call = async {
            let ttl = Duration::from_millis(r.ttl_ms);
            let bad = |m: String| Status::invalid_argument(m);
            if ttl.is_zero() || ttl > app.cfg.max_token_ttl {
                return Err(bad(format!(
                    "ttl: expected between 1s and {} (max_token_ttl)",
                    humantime::format_duration(app.cfg.max_token_ttl)
                )));
            }
            if r.uses == 0 {
                return Err(bad("uses: expected at least 1".into()));
            }
            let token_labels: Labels = r.labels.into_iter().collect();
            labels::check_all(&token_labels).map_err(|e| bad(format!("labels: {e}")))?;
            let detail = format!(
                "ttl {} uses {} labels {}",
                humantime::format_duration(ttl),
                r.uses,
                labels::format(&token_labels)
            );
            let (token, expires_at) = app
                .create_token(ttl, r.uses, token_labels, op.peer.actor())
                .await
                .map_err(|e| Status::internal(format!("store: {e}")))?;
            app.audit(Audit {
                actor: op.peer.actor(),
                action: "token.create",
                target: token.id.clone(),
                outcome: Outcome::Ok,
                detail,
            })
            .await;
            Ok(pb::CreateTokenResponse {
                token: token.render(),
                token_id: token.id,
                expires_at_ms: expires_at,
                ca_fingerprint: app.ca.fingerprint(),
            })
            };
            // The secret is not kept: a retry is told which token the
            // first call made.
            let rid = request_id.clone();
            super::idempotency::once_with(
                &app,
                &op.peer.actor(),
                "CreateToken",
                &request_id,
                &key,
                call,
                |t| pb::CreateTokenResponse {
                    token: String::new(),
                    ..t.clone()
                },
                |t| {
                    Err(Status::already_exists(format!(
                        "request_id `{rid}` already created token {} (its secret is shown only once): revoke it if it was lost, and create another with a new request id",
                        t.token_id
                    )))
                },
            )
            .await
            .map(Response::new)
        })
        .await
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        authorize(&self.app, &req, Role::Viewer, None).await?;
        let r = req.into_inner();
        let page = super::page("audit", r.page_size, r.limit, &r.page_token, 100)?;
        let (before, n) = (page.before()?, page.size);
        let rows = self
            .app
            .store
            .call(move |c| store::list_audit_before(c, before, n + 1))
            .await
            .map_err(|e| Status::internal(format!("store: {e}")))?;
        let (rows, next_page_token) = page.finish("audit", rows, |a| a.id.to_string());
        Ok(Response::new(pb::ListAuditResponse {
            next_page_token,
            entries: rows
                .into_iter()
                .map(|a| pb::AuditEntry {
                    id: a.id,
                    at_ms: a.at,
                    actor: a.actor,
                    action: a.action,
                    target: a.target,
                    outcome: a.outcome,
                    detail: a.detail,
                })
                .collect(),
        }))
    }
}

/// Runs a handler that changes the store as a task of its own: a request
/// dropped by its client (a deadline, a cancel) does not stop it half
/// way (a deployment stored and never started, a switch-back claimed and
/// never finished, an action without its audit row).
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(f)
        .await
        .unwrap_or_else(|e| Err(Status::internal(format!("the request failed: {e}"))))
}

#[cfg(test)]
mod fuzz {
    //! An operator's `SendCommand`, from arbitrary bytes: never a panic,
    //! and what reaches an agent always has a coordinator-assigned id and
    //! no epoch. `fuzz_*`: see bench/fuzz.sh for long runs.
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        #[test]
        fn fuzz_operator_commands_are_namespaced_and_unfenced(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let Ok(r) = pb::SendCommandRequest::decode(&bytes[..]) else { return Ok(()) };
            if let Ok(c) = operator_command(&r) {
                prop_assert!(c.command_id.starts_with(OPERATOR_COMMAND_PREFIX));
                prop_assert!(c.command_id.len() <= 64);
                prop_assert_eq!(c.epoch, 0);
                prop_assert!(c.deployment_id.is_empty());
            }
        }

        #[test]
        fn fuzz_enrollment_requests_are_checked_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let Ok(r) = pb::EnrollRequest::decode(&bytes[..]) else { return Ok(()) };
            let _ = cutover_common::identity::check_name(&r.host_id);
            let _ = crate::grpc::enroll::check_agent_version(&r.agent_version);
            let _ = crate::app::JoinToken::parse(&r.token);
        }

        #[test]
        fn fuzz_control_requests_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = pb::SubmitDeploymentRequest::decode(&bytes[..]);
            let _ = pb::ControlDeploymentRequest::decode(&bytes[..]);
            let _ = pb::RollbackServiceRequest::decode(&bytes[..]);
            let _ = pb::CreateTokenRequest::decode(&bytes[..]);
            if let Ok(r) = pb::ListHostsRequest::decode(&bytes[..]) {
                let _ = cutover_common::labels::Selector::parse(&r.selector);
            }
        }
    }
}
