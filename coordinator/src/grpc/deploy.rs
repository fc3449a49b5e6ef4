//! The deployment calls of `ControlService`: validate, plan, submit, get,
//! watch, list, control, roll back. Thin: convert, hand to
//! [`crate::rollout`], convert back.

use std::sync::Arc;

use cutover_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::engine::{Event, Rollout};
use crate::grpc::auth::{Operator, Role, authorize};
use crate::rollout::{self, Job, SubmitError};
use crate::store::{self, Audit, DeploymentRecord, Outcome};

impl From<SubmitError> for Status {
    fn from(e: SubmitError) -> Status {
        match e {
            SubmitError::Busy { .. } | SubmitError::HistoryMoved { .. } => {
                Status::failed_precondition(e.to_string())
            }
            SubmitError::Plan(_) => Status::failed_precondition(e.to_string()),
            SubmitError::Promotion(_)
            | SubmitError::OutsideWindow { .. }
            | SubmitError::OutsideEnvironmentWindow { .. }
            | SubmitError::Frozen { .. } => Status::failed_precondition(e.to_string()),
            SubmitError::Store(_) | SubmitError::Internal(_) => Status::internal(e.to_string()),
            SubmitError::RequestReused { .. } => Status::already_exists(e.to_string()),
            SubmitError::Rollback(crate::deployments::RollbackError::NotFound { .. }) => {
                Status::not_found(e.to_string())
            }
            SubmitError::Rollback(_) | SubmitError::Switch(_) => {
                Status::failed_precondition(e.to_string())
            }
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

/// The spec's TOML and the name its errors give it: the text sent, or the
/// typed spec written as TOML (checked by the same parse).
fn spec_text(s: &pb::SpecRequest) -> Result<(String, String), SubmitError> {
    let file = |default: &str| {
        if s.file_name.is_empty() {
            default.to_string()
        } else {
            s.file_name.clone()
        }
    };
    let refused = |field: &str, expected: String| {
        SubmitError::Spec(cutover_common::deploy::SpecError {
            file: file("typed spec"),
            line: 0,
            column: 0,
            field: field.into(),
            expected,
        })
    };
    match &s.spec {
        Some(_) if !s.spec_toml.is_empty() => {
            Err(refused("spec", "spec_toml or spec, not both".into()))
        }
        Some(typed) => {
            let text = super::spec::to_toml(typed).map_err(|e| refused(&e.field, e.why))?;
            Ok((text, file("typed spec")))
        }
        None => Ok((s.spec_toml.clone(), file("spec"))),
    }
}

fn job(s: &pb::SpecRequest) -> Result<Job, SubmitError> {
    let (text, file) = spec_text(s)?;
    job_of(s, &text, &file)
}

fn job_of(s: &pb::SpecRequest, text: &str, file: &str) -> Result<Job, SubmitError> {
    let mut j = Job::new(text, file, &s.version, &s.artifact_url, &s.artifact_sha256)?;
    j.spec.targets.include_drained |= s.include_drained;
    for env in &s.require_success_in {
        if let Err(e) = cutover_common::labels::check("environment", env) {
            return Err(SubmitError::Spec(cutover_common::deploy::SpecError {
                file: "--require-success-in".into(),
                line: 0,
                column: 0,
                field: String::new(),
                expected: e.to_string(),
            }));
        }
        if !j.spec.targets.requires_success_in.contains(env) {
            j.spec.targets.requires_success_in.push(env.clone());
        }
    }
    if !s.require_success_in.is_empty() && j.spec.targets.environment.is_none() {
        return Err(SubmitError::Spec(cutover_common::deploy::SpecError {
            file: file.into(),
            line: 0,
            column: 0,
            field: "targets.environment".into(),
            expected: "expected an environment: --require-success-in gates promotion into one"
                .into(),
        }));
    }
    Ok(j)
}

/// The wire view of a deployment.
pub fn info(d: &DeploymentRecord, live: Option<&Rollout>) -> pb::DeploymentInfo {
    let rollout: Option<Rollout> = live
        .cloned()
        .or_else(|| serde_json::from_str(&d.rollout_json).ok());
    let now = cutover_common::time::now_ms();
    pb::DeploymentInfo {
        id: d.id.clone(),
        service: d.service.clone(),
        version: d.version.clone(),
        phase: rollout
            .as_ref()
            .map(|r| r.phase.name().to_string())
            .unwrap_or_else(|| d.phase.clone()),
        rollout_json: rollout
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("serializable"))
            .unwrap_or_default(),
        created_by: d.created_by.clone(),
        created_at_ms: d.created_at,
        environment: d.environment.clone(),
        rollback_of: d.rollback_of.clone().unwrap_or_default(),
        commit_time_ms: d.commit_time.unwrap_or(0),
        finished_at_ms: rollout
            .as_ref()
            .and_then(|r| r.finished_ms)
            .or(d.finished_at)
            .unwrap_or(0),
        blocked_on: rollout
            .as_ref()
            .and_then(|r| r.blocked_on(now))
            .unwrap_or_default(),
        revision: rollout.as_ref().map(|r| r.revision).unwrap_or(0),
        status: rollout.as_ref().map(|r| super::convert::status(r, now)),
        created_at: Some(super::convert::timestamp(d.created_at)),
        finished_at: rollout
            .as_ref()
            .and_then(|r| r.finished_ms)
            .or(d.finished_at)
            .map(super::convert::timestamp),
    }
}

async fn record(app: &App, id: &str) -> Result<DeploymentRecord, Status> {
    let i = id.to_string();
    app.store
        .call(move |c| store::get_deployment(c, &i))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(|| {
            Status::not_found(if id.is_empty() {
                "no deployment yet".to_string()
            } else {
                format!("no deployment `{id}`")
            })
        })
}

async fn audit(
    app: &App,
    op: &Operator,
    action: &'static str,
    target: &str,
    outcome: Outcome,
    detail: String,
) {
    app.audit(Audit {
        actor: op.peer.actor(),
        action,
        target: target.into(),
        outcome,
        detail,
    })
    .await;
}

pub async fn validate(
    app: &Arc<App>,
    req: Request<pb::SpecRequest>,
) -> Result<Response<pb::ValidateResponse>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let s = req.into_inner();
    let spec = parsed(&s)?;
    Ok(Response::new(pb::ValidateResponse {
        summary: summary(&spec),
    }))
}

/// The spec of a request, parsed and checked (overrides not applied).
fn parsed(s: &pb::SpecRequest) -> Result<cutover_common::deploy::DeploySpec, Status> {
    let (text, file) = spec_text(s).map_err(Status::from)?;
    cutover_common::deploy::DeploySpec::parse(&text, &file)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn summary(spec: &cutover_common::deploy::DeploySpec) -> String {
    format!(
        "service {} ({:?}, targets {})",
        spec.service, spec.strategy.kind, spec.targets.selector
    )
}

/// `ParseSpec`: the spec as typed fields and as TOML, every default
/// filled in.
pub async fn parse(
    app: &Arc<App>,
    req: Request<pb::SpecRequest>,
) -> Result<Response<pb::ParseSpecResponse>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let spec = parsed(req.get_ref())?;
    let spec_toml = toml::to_string(&spec)
        .map_err(|e| Status::internal(format!("writing the spec as TOML: {e}")))?;
    Ok(Response::new(pb::ParseSpecResponse {
        spec: Some(super::spec::from_spec(&spec)),
        spec_toml,
        summary: summary(&spec),
    }))
}

pub async fn plan(
    app: &Arc<App>,
    req: Request<pb::SpecRequest>,
) -> Result<Response<pb::PlanResponse>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let s = req.into_inner();
    let mut spec = parsed(&s)?;
    // The override a submit would apply changes who is planned.
    spec.targets.include_drained |= s.include_drained;
    let env = spec.targets.environment.clone().unwrap_or_default();
    let live = rollout::live_group(app, &spec.service, &env)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let plan = crate::engine::plan_with(
        &spec,
        &rollout::candidates(app, &spec.service),
        live.as_deref(),
    )
    .map_err(|e| Status::failed_precondition(e.to_string()))?;
    Ok(Response::new(super::convert::plan(&plan)))
}

pub async fn submit(
    app: &Arc<App>,
    req: Request<pb::SubmitDeploymentRequest>,
) -> Result<Response<pb::DeploymentInfo>, Status> {
    let op =
        crate::grpc::auth::authorize_change(app, &req, Role::Deployer, "deployment.submit").await?;
    let r = req.into_inner();
    let spec = r
        .spec
        .ok_or_else(|| Status::invalid_argument("spec: expected a spec"))?;
    let commit = (r.commit_time_ms > 0).then_some(r.commit_time_ms);
    let request_id = super::check_request_id(&r.request_id)?;
    let outside_window = (!r.outside_window_reason.trim().is_empty())
        .then(|| r.outside_window_reason.trim().to_string());
    let result = match job(&spec) {
        Ok(job) => {
            // A switch command runs on the coordinator itself: only admins
            // (who hold the CA anyway) may submit one. Checked on the spec
            // as parsed, however it was sent (TOML or typed).
            if op.role < Role::Admin && job.spec.strategy.switch.is_some() {
                let msg = "strategy.switch runs a command on the coordinator: submitting it needs the admin role"
                    .to_string();
                audit(
                    app,
                    &op,
                    "deployment.submit",
                    &job.spec.service,
                    Outcome::Denied,
                    msg.clone(),
                )
                .await;
                return Err(Status::permission_denied(msg));
            }
            let by = rollout::Submission {
                actor: op.peer.actor(),
                commit_time: commit,
                rollback: None,
                request_id,
                outside_window: outside_window.clone(),
            };
            rollout::submit(app, job, by).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((d, live)) => {
            audit(
                app,
                &op,
                "deployment.submit",
                &d.id,
                Outcome::Ok,
                format!(
                    "{} version {} ({}){}",
                    d.service,
                    d.version,
                    live.release_id,
                    outside_window
                        .as_ref()
                        .map(|w| format!(", outside its deploy windows: {w}"))
                        .unwrap_or_default()
                ),
            )
            .await;
            Ok(Response::new(info(&d, Some(&live))))
        }
        Err(e) => {
            audit(
                app,
                &op,
                "deployment.submit",
                "",
                Outcome::Error,
                e.to_string(),
            )
            .await;
            Err(e.into())
        }
    }
}

pub async fn get(
    app: &Arc<App>,
    req: Request<pb::GetDeploymentRequest>,
) -> Result<Response<pb::DeploymentInfo>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let d = record(app, &req.get_ref().id).await?;
    let live = app.rollouts.watch(&d.id).map(|w| w.borrow().clone());
    Ok(Response::new(info(&d, live.as_ref())))
}

pub type InfoStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::DeploymentInfo, Status>> + Send>>;

pub async fn watch(
    app: &Arc<App>,
    req: Request<pb::GetDeploymentRequest>,
) -> Result<Response<InfoStream>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let after = req.get_ref().after_revision;
    let d = record(app, &req.get_ref().id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    // Subscribed before the first state is read: nothing falls between.
    let w = app.rollouts.watch(&d.id);
    let first = info(&d, w.as_ref().map(|w| w.borrow().clone()).as_ref());
    let app = app.clone();
    tokio::spawn(async move {
        let terminal = |i: &pb::DeploymentInfo| crate::engine::is_terminal_name(&i.phase);
        let mut last = after;
        if first.revision > after || terminal(&first) {
            last = last.max(first.revision);
            let done = terminal(&first);
            if tx.send(Ok(first)).await.is_err() || done {
                return;
            }
        }
        // Not terminal: it ends OK only after a terminal state, never by
        // just stopping (a client would take that for the end).
        let unavailable = |why: String, last: u64| {
            Status::unavailable(format!("{why}: watch again with after_revision {last}"))
        };
        let Some(mut w) = w else {
            let _ = tx
                .send(Err(unavailable(
                    format!(
                        "deployment {} is not finished, but no runner drives it on this coordinator (restarting?)",
                        d.id
                    ),
                    last,
                )))
                .await;
            return;
        };
        while w.changed().await.is_ok() {
            let r = w.borrow_and_update().clone();
            if r.revision <= last {
                continue;
            }
            last = r.revision;
            let done = r.phase.is_terminal();
            if tx.send(Ok(info(&d, Some(&r)))).await.is_err() || done {
                return;
            }
        }
        // The runner has ended: its end is in the store.
        match record(&app, &d.id).await {
            Ok(end) => {
                let i = info(&end, None);
                if terminal(&i) {
                    if i.revision > last || last == after {
                        let _ = tx.send(Ok(i)).await;
                    }
                    return;
                }
                let _ = tx
                    .send(Err(unavailable(
                        format!(
                            "the runner of deployment {} stopped while it was {}",
                            d.id, i.phase
                        ),
                        last,
                    )))
                    .await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

pub async fn list(
    app: &Arc<App>,
    req: Request<pb::ListDeploymentsRequest>,
) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let r = req.into_inner();
    super::check_name_arg("service", &r.service, false)?;
    let page = super::page("deployments", r.page_size, r.limit, &r.page_token, 50)?;
    let (before, n) = (page.before()?, page.size);
    let rows = app
        .store
        .call(move |c| store::list_deployments_before(c, &r.service, before, n + 1))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let (rows, next_page_token) = page.finish("deployments", rows, |d| d.seq.to_string());
    Ok(Response::new(pb::ListDeploymentsResponse {
        next_page_token,
        deployments: rows
            .iter()
            .map(|d| {
                info(
                    d,
                    app.rollouts
                        .watch(&d.id)
                        .map(|w| w.borrow().clone())
                        .as_ref(),
                )
            })
            .collect(),
    }))
}

pub async fn control(
    app: &Arc<App>,
    req: Request<pb::ControlDeploymentRequest>,
) -> Result<Response<pb::DeploymentInfo>, Status> {
    let op = crate::grpc::auth::authorize_change(app, &req, Role::Deployer, "deployment.control")
        .await?;
    let r = req.into_inner();
    let (key, rid, actor) = (
        prost::Message::encode_to_vec(&r),
        r.request_id.clone(),
        op.peer.actor(),
    );
    super::idempotency::once(
        app,
        &actor,
        "ControlDeployment",
        &rid,
        &key,
        control_now(app, op, r),
    )
    .await
    .map(Response::new)
}

async fn control_now(
    app: &Arc<App>,
    op: Operator,
    r: pb::ControlDeploymentRequest,
) -> Result<pb::DeploymentInfo, Status> {
    if r.id.is_empty() {
        return Err(Status::invalid_argument(
            "id: expected a deployment id (see `cutover history`)",
        ));
    }
    let ev = match r.action.as_str() {
        "pause" => Event::Pause,
        "resume" => Event::Resume,
        "abort" => Event::Abort,
        "rollback" => Event::Rollback,
        "promote" => Event::Promote,
        "approve" => Event::Approve {
            by: op.peer.actor(),
        },
        other => {
            return Err(Status::invalid_argument(format!(
                "action `{other}`: expected pause, resume, promote, approve, abort or rollback"
            )));
        }
    };
    let d = record(app, &r.id).await?;
    // Four eyes: whoever submitted a deployment cannot approve it.
    if matches!(ev, Event::Approve { .. }) && d.created_by == op.peer.actor() {
        let msg = format!(
            "{} submitted deployment {}: another operator must approve it",
            d.created_by, d.id
        );
        audit(
            app,
            &op,
            "deployment.control",
            &d.id,
            Outcome::Denied,
            msg.clone(),
        )
        .await;
        return Err(Status::permission_denied(msg));
    }
    // An action that would change nothing is refused, saying why (was:
    // accepted, ignored, exit 0).
    if let Some(now) = app.rollouts.watch(&d.id).map(|w| w.borrow().clone())
        && let Some(why) = now.refuses(&ev)
    {
        return Err(Status::failed_precondition(why));
    }
    let Some(answer) = app.rollouts.ask(&d.id, ev) else {
        audit(
            app,
            &op,
            "deployment.control",
            &d.id,
            Outcome::Error,
            format!("{} on a finished deployment", r.action),
        )
        .await;
        return Err(Status::failed_precondition(format!(
            "deployment {} is not running (it is {})",
            d.id, d.phase
        )));
    };
    audit(
        app,
        &op,
        "deployment.control",
        &d.id,
        Outcome::Ok,
        r.action.clone(),
    )
    .await;
    // The state the action led to, once the runner applied and stored it
    // (it answers between two steps; a runner that ended meanwhile
    // answers nothing, and the store has its end).
    let live = match tokio::time::timeout(std::time::Duration::from_secs(30), answer).await {
        Ok(Ok(r)) => Some(r),
        _ => app.rollouts.watch(&d.id).map(|w| w.borrow().clone()),
    };
    let d = record(app, &d.id).await?;
    Ok(info(&d, live.as_ref()))
}

pub async fn rollback_service(
    app: &Arc<App>,
    req: Request<pb::RollbackServiceRequest>,
) -> Result<Response<pb::DeploymentInfo>, Status> {
    let op = crate::grpc::auth::authorize_change(app, &req, Role::Deployer, "deployment.rollback")
        .await?;
    let r = req.into_inner();
    let (key, rid, actor) = (
        prost::Message::encode_to_vec(&r),
        r.request_id.clone(),
        op.peer.actor(),
    );
    super::idempotency::once(
        app,
        &actor,
        "RollbackService",
        &rid,
        &key,
        rollback_now(app, op, r),
    )
    .await
    .map(Response::new)
}

async fn rollback_now(
    app: &Arc<App>,
    op: Operator,
    r: pb::RollbackServiceRequest,
) -> Result<pb::DeploymentInfo, Status> {
    super::check_name_arg("service", &r.service, true)?;
    if !r.to_version.is_empty() {
        cutover_common::deploy::check_version(&r.to_version)
            .map_err(|why| Status::invalid_argument(format!("to_version: {why}")))?;
    }
    if !r.environment.is_empty() {
        super::check_name_arg("environment", &r.environment, true)?;
    }
    let environment = (!r.environment.is_empty()).then(|| r.environment.clone());
    let to_version = (!r.to_version.is_empty()).then(|| r.to_version.clone());
    let result =
        crate::deployments::rollback(app, op.peer.actor(), &r.service, environment, to_version)
            .await;
    let (d, live) = match result {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, SubmitError::Switch(_)) {
                audit(
                    app,
                    &op,
                    "deployment.rollback",
                    &r.service,
                    Outcome::Error,
                    e.to_string(),
                )
                .await;
            }
            return Err(e.into());
        }
    };
    app.metrics.rollback(&d.service, &d.environment, "operator");
    let what = if live.switch_back {
        format!(
            "{} switched back to group {} (version {}), undoing {}",
            d.service,
            live.group.clone().unwrap_or_default(),
            d.version,
            d.rollback_of.clone().unwrap_or_default()
        )
    } else {
        format!(
            "{} back to version {}, undoing {}",
            d.service,
            d.version,
            d.rollback_of.clone().unwrap_or_default()
        )
    };
    audit(app, &op, "deployment.rollback", &d.id, Outcome::Ok, what).await;
    Ok(info(&d, Some(&live)))
}

pub async fn stats(
    app: &Arc<App>,
    req: Request<pb::StatsRequest>,
) -> Result<Response<pb::StatsResponse>, Status> {
    authorize(app, &req, Role::Viewer, None).await?;
    let r = req.into_inner();
    super::check_name_arg("service", &r.service, false)?;
    if !r.environment.is_empty() {
        cutover_common::labels::check("environment", &r.environment)
            .map_err(|e| Status::invalid_argument(format!("environment: {e}")))?;
    }
    let d = crate::dora::measure(app, r.service, r.environment, r.since_ms)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let summary = |s: Option<crate::dora::Summary>| {
        s.map(|s| pb::DurationSummary {
            n: s.n as u32,
            median_ms: s.median_ms,
            p90_ms: s.p90_ms,
        })
    };
    Ok(Response::new(pb::StatsResponse {
        since_ms: d.since_ms,
        until_ms: d.until_ms,
        changes: d.changes as u32,
        succeeded: d.succeeded as u32,
        failed: d.failed as u32,
        deployments_per_day: d.deployments_per_day,
        lead_time: summary(d.lead_time),
        change_failure_rate: d.change_failure_rate,
        time_to_restore: summary(d.time_to_restore),
        unrestored: d.unrestored as u32,
        failed_ids: d.failed_ids,
    }))
}
