//! Runs rollouts: turns a submitted spec into a planned [`Rollout`], and
//! drives each with a runner task that feeds it events (command results,
//! health, time, operator actions), stores every transition before sending
//! the commands it produced, and re-sends in-flight commands after a lost
//! session or a coordinator restart (agents answer repeated command ids
//! from their journal, so no host acts twice for one step).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use cutover_common::deploy::{ArtifactSpec, DeploySpec};
use cutover_common::time::now_ms;
use cutover_proto::v1 as pb;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::app::App;
use crate::engine::{self, Candidate, Effect, Event, HostPhase, Plan, PlanError, Rollout};
use crate::samples::Window;
use crate::store::{self, DeploymentRecord, StoreError};

/// Why a deployment could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Spec(#[from] cutover_common::deploy::SpecError),
    #[error("no version: pass --version or set `version` in the spec")]
    NoVersion,
    #[error("no artifact: pass --artifact and --sha256 or set [artifact] in the spec")]
    NoArtifact,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("switching traffic back failed: {0}")]
    Switch(String),
    #[error(
        "deployment {id} of `{service}` is still {phase} (started by {by}); wait for it, or `cutover abort {id}`"
    )]
    Busy {
        id: String,
        service: String,
        phase: String,
        by: String,
    },
    #[error(
        "`{service}` changed while the rollback was prepared: its newest deployment is now {now}, not {read}; run `cutover rollback {service}` again"
    )]
    HistoryMoved {
        service: String,
        read: String,
        now: String,
    },
    #[error(transparent)]
    Promotion(#[from] crate::promotion::Refused),
    #[error(transparent)]
    Rollback(#[from] crate::deployments::RollbackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(
        "outside the deploy windows of `{service}` ({windows}, UTC): the next opens at {next}; `cutover deploy --outside-window REASON` starts it anyway (audited)"
    )]
    OutsideWindow {
        service: String,
        windows: String,
        next: String,
    },
    #[error(
        "outside the deploy windows of environment `{environment}` ({windows}, UTC; coordinator.toml [environments.{environment}]): the next opens at {next}; `cutover deploy --outside-window REASON` starts it anyway (audited)"
    )]
    OutsideEnvironmentWindow {
        environment: String,
        windows: String,
        next: String,
    },
    #[error(
        "the spec names no environment but reaches hosts of one with rules (coordinator.toml [environments.{environment}]): {hosts}; set `environment = \"{environment}\"` under [targets] (its rules then apply), or select other hosts"
    )]
    EnvironmentUnnamed { hosts: String, environment: String },
    #[error(
        "environment `{environment}` is frozen until {until}{reason} (coordinator.toml [environments.{environment}]); `cutover deploy --outside-window REASON` starts it anyway (audited); rollbacks are never held"
    )]
    Frozen {
        environment: String,
        until: String,
        /// ": why", or empty.
        reason: String,
    },
    #[error(
        "request_id `{request_id}` was already used for a different deployment ({id}); use a new request id for a new deployment"
    )]
    RequestReused { request_id: String, id: String },
}

/// An operator's rollback, as submitted.
#[derive(Debug, Clone)]
pub struct RollbackOf {
    /// The deployment it undoes.
    pub undoes: String,
    /// The newest deployment in the environment when it was planned: if
    /// another has come since, the plan is stale and nothing is done.
    pub newest: String,
}

/// Inside a submit's transaction: a deployment of `service` still running,
/// or (for a rollback planned from `newest`) a history that moved since.
pub(crate) fn busy_or_moved(
    tx: &mut dyn store::Db,
    service: &str,
    environment: &str,
    newest: &str,
) -> Result<Option<SubmitError>, StoreError> {
    let running = store::list_deployments(tx, service, 20)?
        .into_iter()
        .find(|d| store::ACTIVE_PHASES.contains(&d.phase.as_str()));
    if let Some(d) = running {
        return Ok(Some(SubmitError::Busy {
            id: d.id,
            service: d.service,
            phase: d.phase,
            by: d.created_by,
        }));
    }
    if newest.is_empty() {
        return Ok(None);
    }
    let now = store::newest_in(tx, service, environment)?.unwrap_or_default();
    Ok((now != newest).then(|| SubmitError::HistoryMoved {
        service: service.into(),
        read: newest.into(),
        now,
    }))
}

/// A spec with its command-line overrides applied.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: DeploySpec,
    pub spec_toml: String,
    pub version: String,
    pub artifact: ArtifactSpec,
    /// The host part of the spec as JSON, made once for every Stage.
    service_spec_json: std::sync::OnceLock<Vec<u8>>,
}

impl Job {
    /// Parses and completes a spec.
    pub fn new(
        text: &str,
        file: &str,
        version: &str,
        url: &str,
        sha256: &str,
    ) -> Result<Job, SubmitError> {
        let spec = DeploySpec::parse(text, file)?;
        // Overrides are checked here as the spec's own values are at
        // parse: a bad one is refused before anything is stored or sent,
        // not found out by every agent.
        let flag = |flag: &str, field: &str, expected: String| {
            SubmitError::Spec(cutover_common::deploy::SpecError {
                file: flag.into(),
                line: 0,
                column: 0,
                field: field.into(),
                expected,
            })
        };
        let version = if version.is_empty() {
            spec.version.clone().ok_or(SubmitError::NoVersion)?
        } else {
            cutover_common::deploy::check_version(version)
                .map_err(|why| flag("--version", "version", why))?;
            version.to_string()
        };
        let artifact = if url.is_empty() {
            if !sha256.is_empty() {
                return Err(flag(
                    "--sha256",
                    "artifact.sha256",
                    "given without --artifact: the checksum belongs to an artifact URL".into(),
                ));
            }
            spec.artifact.clone().ok_or(SubmitError::NoArtifact)?
        } else {
            let sha256 =
                cutover_common::deploy::check_artifact(url, sha256).map_err(|(field, why)| {
                    flag(
                        if field == "artifact.url" {
                            "--artifact"
                        } else {
                            "--sha256"
                        },
                        field,
                        why,
                    )
                })?;
            ArtifactSpec {
                url: url.into(),
                sha256,
                max_bytes: spec.artifact.as_ref().and_then(|a| a.max_bytes),
            }
        };
        Ok(Job {
            service_spec_json: std::sync::OnceLock::new(),
            spec,
            spec_toml: text.into(),
            version,
            artifact,
        })
    }

    /// The host spec as JSON for an agent with `caps`: fields an older agent
    /// does not know are left out (`cutover_common::compat`; the plan
    /// refused the deployment if the spec sets one).
    pub fn service_spec_json_for(&self, caps: &[String]) -> Vec<u8> {
        let all = cutover_common::compat::AGENT_CAPABILITIES
            .iter()
            .all(|c| caps.iter().any(|x| x == c));
        if all {
            return self
                .service_spec_json
                .get_or_init(|| {
                    serde_json::to_vec(&self.spec.service_spec()).expect("serializable")
                })
                .clone();
        }
        cutover_common::compat::spec_json_for(&self.spec.service_spec(), caps)
    }

    /// The release id on hosts: the version plus a hash of the artifact and
    /// the host spec, so a changed spec is a new release.
    pub fn release_id(&self) -> String {
        let safe: String = self
            .version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let mut h = Sha256::new();
        h.update(self.artifact.sha256.as_bytes());
        h.update(serde_json::to_vec(&self.spec.service_spec()).expect("serializable"));
        format!("{safe}-{}", &hex::encode(h.finalize())[..8])
    }
}

/// The fleet as the planner sees it.
pub fn candidates(app: &App, service: &str) -> Vec<Candidate> {
    let mut out = app
        .fleet
        .map_hosts(|record, state, session, services| Candidate {
            labels: record.labels(),
            ready: state.as_str() == "ready" && session,
            unready: match (state.as_str(), session) {
                ("ready", true) => None,
                // Stored as ready: its agent has not reconnected since this
                // coordinator started (`cutover hosts` shows no session).
                ("ready", false) => {
                    Some("not connected yet (no session since the coordinator started)".into())
                }
                (other, _) => Some(format!("not ready ({other})")),
            },
            active_release: services
                .get(service)
                .filter(|s| !s.active_release.is_empty())
                .map(|s| s.active_release.clone()),
            drained: services.get(service).and_then(|s| {
                if s.drained && s.stopped {
                    Some("drained and stopped by an operator (`cutover drain --stop`)".to_string())
                } else if s.drained {
                    Some("drained by an operator (`cutover drain`)".to_string())
                } else {
                    None
                }
            }),
            host: record.id.clone(),
            capabilities: Vec::new(),
        });
    for c in &mut out {
        c.capabilities = app.fleet.capabilities(&c.host);
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

/// The blue/green group serving `service` now, from its newest blue/green
/// deployment that decided it.
pub async fn live_group(
    app: &App,
    service: &str,
    environment: &str,
) -> Result<Option<String>, StoreError> {
    let (svc, env) = (service.to_string(), environment.to_string());
    app.store
        .call(move |c| store::live_group(c, &svc, &env))
        .await
}

/// Plans a job against today's fleet.
pub async fn plan(app: &App, job: &Job) -> Result<Plan, SubmitError> {
    let env = job.spec.targets.environment.clone().unwrap_or_default();
    let live = live_group(app, &job.spec.service, &env).await?;
    Ok(engine::plan_with(
        &job.spec,
        &candidates(app, &job.spec.service),
        live.as_deref(),
    )?)
}

/// What a switch command is told of its deployment.
#[derive(Debug, Clone)]
pub struct SwitchEnv {
    pub service: String,
    /// The version traffic goes to.
    pub version: String,
    pub deployment: String,
}

impl SwitchEnv {
    pub fn of(r: &Rollout) -> Self {
        SwitchEnv {
            service: r.service.clone(),
            version: r.version.clone(),
            deployment: r.id.clone(),
        }
    }
}

/// Runs the blue/green switch command on this coordinator: traffic to
/// `live`. Returns (ok, what happened).
pub async fn run_switch(
    job: &Job,
    r: &SwitchEnv,
    live: &str,
    old: Option<&str>,
    hosts: &[String],
) -> (bool, String) {
    let Some(hook) = &job.spec.strategy.switch else {
        return (false, "no switch command in the spec".into());
    };
    let mut cmd = tokio::process::Command::new(&hook.command[0]);
    // Not in the state directory: the switch command has no business with
    // the CA or the store.
    cmd.args(&hook.command[1..])
        .current_dir("/")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CUTOVER_SERVICE", &r.service)
        .env("CUTOVER_VERSION", &r.version)
        .env("CUTOVER_DEPLOYMENT", &r.deployment)
        .env("CUTOVER_LIVE_GROUP", live)
        .env("CUTOVER_OLD_GROUP", old.unwrap_or(""))
        .env("CUTOVER_HOSTS", hosts.join(","))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(hook.timeout, cmd.output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).to_string();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail: String = text
                .trim()
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            (
                out.status.success(),
                format!("{} {tail}", out.status).trim().to_string(),
            )
        }
        Ok(Err(e)) => (false, format!("cannot run {}: {e}", hook.command[0])),
        Err(_) => (
            false,
            format!(
                "timed out after {}",
                humantime::format_duration(hook.timeout)
            ),
        ),
    }
}

struct Runner {
    events: mpsc::UnboundedSender<Asked>,
    view: watch::Receiver<Rollout>,
}

/// An operator's event for a runner, with where to send the rollout once
/// the event is applied and stored.
struct Asked {
    ev: Event,
    reply: tokio::sync::oneshot::Sender<Rollout>,
}

/// Running rollouts, by deployment id.
#[derive(Default)]
pub struct Rollouts {
    running: Mutex<HashMap<String, Runner>>,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rollouts")
    }
}

impl Rollouts {
    /// Commands the running rollouts wait on.
    pub fn commands_in_flight(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| r.view.borrow().in_flight().len())
            .sum()
    }

    /// How many rollouts run now.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Sends an operator event to a running rollout; the answer is the
    /// rollout once the event is applied and stored (None: not running).
    pub fn ask(&self, id: &str, ev: Event) -> Option<tokio::sync::oneshot::Receiver<Rollout>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|r| r.events.send(Asked { ev, reply: tx }).is_ok());
        sent.then_some(rx)
    }

    /// Follows a running rollout.
    pub fn watch(&self, id: &str) -> Option<watch::Receiver<Rollout>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|r| r.view.clone())
    }
}

/// Submits a deployment: at most one running per service.
///
/// Atomic for the caller: it runs as a task of its own, so a request
/// dropped meanwhile (a client's deadline, a cancel, a cut connection)
/// leaves either nothing stored or a deployment that runs, never one
/// stored and not started (which held the service "busy" until a
/// restart).
pub async fn submit(
    app: &Arc<App>,
    job: Job,
    by: Submission,
) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    let app = app.clone();
    tokio::spawn(async move { submit_now(&app, job, by).await })
        .await
        .unwrap_or_else(|e| Err(SubmitError::Internal(format!("submitting failed: {e}"))))
}

/// Who submits a deployment, and how.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// For the audit log and `created_by`.
    pub actor: String,
    /// When the change was committed (lead time), Unix ms.
    pub commit_time: Option<i64>,
    /// Set for an operator's rollback.
    pub rollback: Option<RollbackOf>,
    /// The caller's idempotency key: a retry gets the deployment the
    /// first try stored.
    pub request_id: Option<String>,
    /// Why it starts outside the spec's deploy windows (`--outside-window`);
    /// `None`: only inside them.
    pub outside_window: Option<String>,
}

/// A request id seen before: the same deployment (Ok, not started again),
/// or a different one (refused).
fn repeated(
    prev: Option<DeploymentRecord>,
    job: &Job,
    request_id: &str,
) -> Option<Result<DeploymentRecord, SubmitError>> {
    let prev = prev?;
    let same = prev.spec_toml == job.spec_toml
        && prev.version == job.version
        && prev.artifact_url == job.artifact.url
        && prev.artifact_sha256 == job.artifact.sha256;
    Some(if same {
        Ok(prev)
    } else {
        Err(SubmitError::RequestReused {
            request_id: request_id.into(),
            id: prev.id,
        })
    })
}

async fn submit_now(
    app: &Arc<App>,
    job: Job,
    by: Submission,
) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    let (actor, rid) = (by.actor.clone(), by.request_id.clone());
    match submit_new(app, job.clone(), by).await {
        // Refused (say, as busy) while the first try of this request was
        // being stored beside it, or already done: the retry gets the
        // first one's deployment, however far it has got, and starts
        // nothing. (A retry that finds it first is answered inside the
        // storing transaction.)
        Err(e) if rid.is_some() && !matches!(e, SubmitError::RequestReused { .. }) => {
            let rid = rid.expect("checked");
            let prev = app
                .store
                .call(move |c| {
                    store::by_request_id(c, &actor, &rid).map(|p| repeated(p, &job, &rid))
                })
                .await?;
            match prev {
                Some(r) => known(app, r?),
                None => Err(e),
            }
        }
        r => r,
    }
}

/// Whether a deployment to `environment` may start at `now_ms` by its
/// policy: not in a freeze, inside its windows (pure).
pub fn check_environment(
    environment: &str,
    p: &crate::config::EnvironmentPolicy,
    now_ms: i64,
) -> Result<(), SubmitError> {
    for f in &p.freezes {
        // Checked when the config was loaded.
        let Ok((from, until)) = f.span_ms() else {
            continue;
        };
        if (from..until).contains(&now_ms) {
            return Err(SubmitError::Frozen {
                environment: environment.into(),
                until: f.until.clone(),
                reason: if f.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.reason)
                },
            });
        }
    }
    let windows = cutover_common::windows::parse_all(&p.windows).map_err(|(i, why)| {
        SubmitError::Internal(format!("environments.{environment}.windows[{i}]: {why}"))
    })?;
    if let Err(next) = cutover_common::windows::check(&windows, now_ms) {
        return Err(SubmitError::OutsideEnvironmentWindow {
            environment: environment.into(),
            windows: p.windows.join(", "),
            next: humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(next))
                .to_string(),
        });
    }
    Ok(())
}

/// Stores a new deployment and starts its runner.
async fn submit_new(
    app: &Arc<App>,
    mut job: Job,
    by: Submission,
) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    let environment = job.spec.targets.environment.clone().unwrap_or_default();
    let policy = app.cfg.environments.get(&environment).cloned();
    // The environment's rules (coordinator.toml), whatever the spec
    // says; an operator's rollback is held by none of them.
    if let Some(p) = &policy
        && by.rollback.is_none()
    {
        if p.approval {
            job.spec.targets.approval = true;
        }
        if by.outside_window.is_none() {
            check_environment(&environment, p, cutover_common::time::now_ms())?;
        }
    }
    // Deploy windows hold new deployments, never the way back.
    if by.rollback.is_none() && by.outside_window.is_none() {
        let windows = cutover_common::windows::parse_all(&job.spec.targets.windows)
            .map_err(|(i, why)| SubmitError::Internal(format!("targets.windows[{i}]: {why}")))?;
        if let Err(next) = cutover_common::windows::check(&windows, cutover_common::time::now_ms())
        {
            return Err(SubmitError::OutsideWindow {
                service: job.spec.service.clone(),
                windows: job.spec.targets.windows.join(", "),
                next: humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(next))
                    .to_string(),
            });
        }
    }
    // Before planning: a service busy with another deployment is refused
    // at once (and checked again when storing).
    let (svc, env) = (
        job.spec.service.clone(),
        job.spec.targets.environment.clone().unwrap_or_default(),
    );
    if let Some(e) = app
        .store
        .call(move |c| busy_or_moved(c, &svc, &env, ""))
        .await?
    {
        return Err(e);
    }
    let plan = plan(app, &job).await?;
    // A spec that names no environment but reaches hosts of one with
    // rules would pass around them: it must name it.
    if environment.is_empty() && by.rollback.is_none() && !app.cfg.environments.is_empty() {
        let targets: std::collections::BTreeSet<&str> =
            plan.batches.iter().flatten().map(String::as_str).collect();
        let mut ruled: Vec<(String, String)> = app
            .fleet
            .map_hosts(|r, _, _, _| (r.id.clone(), r.labels().get("environment").cloned()))
            .into_iter()
            .filter_map(|(h, env)| {
                let env = env?;
                (targets.contains(h.as_str()) && app.cfg.environments.contains_key(&env))
                    .then_some((h, env))
            })
            .collect();
        if !ruled.is_empty() {
            ruled.sort();
            return Err(SubmitError::EnvironmentUnnamed {
                hosts: ruled
                    .iter()
                    .map(|(h, e)| format!("{h} ({e})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                environment: ruled[0].1.clone(),
            });
        }
    }
    let release_id = job.release_id();
    // Past every deployment an agent has seen (after a restore).
    let floor = app.fleet.newest_epoch() as i64 + 1;
    let Submission {
        actor,
        commit_time,
        rollback,
        request_id,
        outside_window: _,
    } = by;
    let (j, a) = (job.clone(), actor.clone());
    let stored = app
        .store
        .call(move |c| {
            let mut tx = c.transaction()?;
            // Two retries of one request at once: the second finds the
            // first's deployment.
            if let Some(rid) = &request_id
                && let Some(r) = repeated(store::by_request_id(&mut tx, &a, rid)?, &j, rid)
            {
                return Ok(r.map(Stored::Again));
            }
            // Checked again inside the transaction: two submits at once
            // cannot both pass. An operator's rollback was planned from the
            // newest deployment it read; if another has come since (it was
            // finishing while the rollback was prepared), the plan is stale
            // and nothing is done.
            let env = j.spec.targets.environment.clone().unwrap_or_default();
            let newest = rollback.as_ref().map(|r| r.newest.as_str()).unwrap_or("");
            if let Some(e) = busy_or_moved(&mut tx, &j.spec.service, &env, newest)? {
                return Ok(Err(e));
            }
            // The promotion gate, against the stored history. An
            // operator's rollback goes back to a version that already ran
            // here: it is never held up.
            if rollback.is_none() && !j.spec.targets.requires_success_in.is_empty() {
                let history = store::list_deployments(&mut tx, &j.spec.service, u32::MAX)?;
                if let Err(refused) = crate::promotion::check(
                    &j.spec.targets.requires_success_in,
                    &j.spec.service,
                    &j.version,
                    &j.artifact.sha256,
                    &history,
                ) {
                    return Ok(Err(refused.into()));
                }
            }
            let seq = store::next_deployment_seq(&mut tx)?.max(floor);
            let id = format!("d{seq}");
            let now = now_ms();
            let rollout =
                Rollout::new(&id, &j.spec, &j.version, &release_id, plan, seq as u64, now);
            let record = DeploymentRecord {
                seq,
                id,
                service: j.spec.service.clone(),
                version: j.version.clone(),
                spec_toml: j.spec_toml.clone(),
                artifact_url: j.artifact.url.clone(),
                artifact_sha256: j.artifact.sha256.clone(),
                rollout_json: serde_json::to_string(&rollout).expect("serializable"),
                phase: rollout.phase.name().into(),
                created_by: a,
                created_at: now,
                finished_at: None,
                commit_time,
                environment: env,
                rollback_of: rollback.map(|r| r.undoes),
            };
            store::insert_deployment(&mut tx, &record)?;
            if let Some(rid) = &request_id {
                store::set_request_id(&mut tx, &record.id, rid)?;
            }
            tx.commit()?;
            Ok(Ok(Stored::New(record, rollout)))
        })
        .await??;
    match stored {
        Stored::Again(prev) => known(app, prev),
        Stored::New(record, rollout) => {
            spawn(app, job, rollout.clone(), true);
            Ok((record, rollout))
        }
    }
}

/// A deployment already stored, with its rollout as it stands.
fn known(app: &App, prev: DeploymentRecord) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    let rollout = app
        .rollouts
        .watch(&prev.id)
        .map(|w| w.borrow().clone())
        .or_else(|| serde_json::from_str(&prev.rollout_json).ok())
        .ok_or_else(|| SubmitError::Internal(format!("deployment {} is unreadable", prev.id)))?;
    Ok((prev, rollout))
}

/// What a submit's transaction did.
enum Stored {
    New(DeploymentRecord, Rollout),
    Again(DeploymentRecord),
}

/// Resumes the rollouts a previous coordinator process left running.
pub async fn resume_all(app: &Arc<App>) -> Result<usize, StoreError> {
    let active = app.store.call(|c| store::active_deployments(c)).await?;
    let n = active.len();
    for d in active {
        let Ok(rollout) = serde_json::from_str::<Rollout>(&d.rollout_json) else {
            tracing::error!(deployment = %d.id, "stored rollout is unreadable; leaving it");
            continue;
        };
        match Job::new(
            &d.spec_toml,
            &format!("deployment {}", d.id),
            &d.version,
            &d.artifact_url,
            &d.artifact_sha256,
        ) {
            Ok(job) => {
                tracing::info!(deployment = %d.id, phase = %d.phase, "resuming a rollout after a restart");
                spawn(app, job, rollout, false);
            }
            Err(e) => {
                tracing::error!(deployment = %d.id, error = %e, "stored spec no longer parses; leaving it")
            }
        }
    }
    Ok(n)
}

fn spawn(app: &Arc<App>, job: Job, rollout: Rollout, fresh: bool) {
    let (etx, erx) = mpsc::unbounded_channel();
    let (vtx, vrx) = watch::channel(rollout.clone());
    app.rollouts
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            rollout.id.clone(),
            Runner {
                events: etx,
                view: vrx,
            },
        );
    let results = app.commands.subscribe_deployment(&rollout.id);
    tokio::spawn(run(app.clone(), job, rollout, fresh, erx, results, vtx));
}

/// The command for effect `e`, for a host whose agent announced `caps`;
/// `None` for the switch, which is no host's command.
fn command(job: &Job, r: &Rollout, e: &Effect, caps: &[String]) -> Option<pb::Command> {
    use pb::command::Kind;
    let service = r.service.clone();
    let kind = match e {
        Effect::Switch { .. } => return None,
        Effect::Stage { .. } => Kind::Stage(pb::StageCommand {
            service,
            release_id: r.release_id.clone(),
            version: r.version.clone(),
            artifact_url: job.artifact.url.clone(),
            artifact_sha256: job.artifact.sha256.clone(),
            max_bytes: job.artifact.max_bytes.unwrap_or(0),
            service_spec_json: job.service_spec_json_for(caps),
        }),
        Effect::Activate { .. } => Kind::Activate(pb::ActivateCommand {
            service,
            release_id: r.release_id.clone(),
            include_drained: job.spec.targets.include_drained,
        }),
        // A rollback, not an activation: the agent gives up a swap still
        // in progress (or a liveness replacement of the release being
        // left) at once instead of finishing it first.
        Effect::Revert { to: Some(rel), .. } => Kind::Rollback(pb::RollbackCommand {
            service,
            to_release_id: rel.clone(),
        }),
        Effect::Stop { .. } => Kind::Stop(pb::StopCommand {
            service,
            keep_listeners: true,
            include_drained: job.spec.targets.include_drained,
        }),
        // Undoing what this rollout did, drained since or not.
        Effect::Revert { to: None, .. } => Kind::Stop(pb::StopCommand {
            service,
            keep_listeners: false,
            include_drained: true,
        }),
    };
    Some(pb::Command {
        command_id: e.command_id().into(),
        deployment_id: r.id.clone(),
        step: r.current_batch().unwrap_or(0) as u32,
        epoch: r.epoch,
        term: 0,
        kind: Some(kind),
    })
}

/// When each command went out, and on which session of its host.
type Sent = HashMap<String, (String, Instant)>;

/// A command still unanswered is sent again when its host has a new
/// session since (the old one may have lost it), or after this long.
const RESEND_AFTER: Duration = Duration::from_secs(30);

/// The in-flight commands worth sending again now (see [`RESEND_AFTER`]).
fn due_again(app: &App, r: &Rollout, sent: &Sent) -> Vec<Effect> {
    r.in_flight()
        .into_iter()
        .filter(|e| match sent.get(e.command_id()) {
            None => true,
            Some((session, at)) => {
                at.elapsed() >= RESEND_AFTER
                    || app
                        .fleet
                        .session_sender(e.host())
                        .is_some_and(|(now, _)| &now != session)
            }
        })
        .collect()
}

async fn send(app: &App, job: &Job, r: &Rollout, effects: &[Effect], sent: &mut Sent) {
    let commands: Vec<(String, pb::Command)> = effects
        .iter()
        .filter_map(|e| {
            let caps = app.fleet.capabilities(e.host());
            command(job, r, e, &caps).map(|c| (e.host().to_string(), c))
        })
        .collect();
    if commands.is_empty() {
        return;
    }
    let ids: Vec<(String, String)> = commands
        .iter()
        .map(|(h, c)| (h.clone(), c.command_id.clone()))
        .collect();
    // The path operators' commands take: recorded, then sent.
    match crate::commands::dispatch(app, commands, &format!("deployment {}", r.id)).await {
        Ok(sessions) => {
            for ((host, id), session) in ids.into_iter().zip(sessions) {
                match session {
                    Some(s) => {
                        sent.insert(id, (s, Instant::now()));
                    }
                    None => {
                        tracing::warn!(deployment = %r.id, host, "host has no session; will re-send")
                    }
                }
            }
        }
        // Nothing went out: the re-send loop tries again (3 s).
        Err(e) => {
            tracing::warn!(deployment = %r.id, error = %e, "recording commands failed; will re-send")
        }
    }
}

/// The outcome of a switch command: (ok, what happened).
type SwitchOutcome = (bool, String);

/// Starts the switch `effects` ask for, unless one runs already: it runs
/// beside the runner's loop (which goes on hearing hosts and operators)
/// and its outcome comes back on `done`.
fn start_switch(
    job: &Job,
    r: &Rollout,
    effects: &[Effect],
    running: &mut bool,
    done: &mpsc::UnboundedSender<SwitchOutcome>,
) {
    let Some(Effect::Switch { live, old, hosts }) =
        effects.iter().find(|e| matches!(e, Effect::Switch { .. }))
    else {
        return;
    };
    if std::mem::replace(running, true) {
        return;
    }
    let (job, env, done) = (job.clone(), SwitchEnv::of(r), done.clone());
    let (live, old, hosts) = (live.clone(), old.clone(), hosts.clone());
    tokio::spawn(async move {
        let outcome = run_switch(&job, &env, &live, old.as_deref(), &hosts).await;
        let _ = done.send(outcome);
    });
}

/// Stores a rollout's state as its next revision; false when that failed
/// (then its commands must not be sent: a transition is stored before it
/// acts).
async fn persist(app: &App, r: &mut Rollout) -> bool {
    r.revision += 1;
    let live = r.live_group_after.clone();
    let (id, json, phase, fin) = (
        r.id.clone(),
        serde_json::to_string(r).expect("serializable"),
        r.phase.name().to_string(),
        r.finished_ms,
    );
    match app
        .store
        .call(move |c| store::update_deployment(c, &id, &json, &phase, fin, live.as_deref()))
        .await
    {
        Ok(()) => {
            // Once stored: a wait for an operator, or a pause, begun now.
            let waiting = matches!(r.phase, engine::Phase::Waiting { until_ms: None, .. })
                || r.awaiting_approval;
            if let Some(n) = app.notifier.get() {
                n.observe(&r.id, waiting, r.paused);
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %cutover_common::error_chain(&e), "storing a rollout transition failed; holding its commands");
            false
        }
    }
}
/// Compares the canaries of `batch` with the hosts still on the old
/// release, over the window opened when the step's bake started.
fn analyse(
    app: &App,
    r: &Rollout,
    batch: usize,
    window: &Window,
    with_requests: bool,
) -> crate::analysis::Report {
    let (canary, baseline) = r.analysis_groups(batch);
    let canary: Vec<(String, Option<String>)> = canary
        .into_iter()
        .map(|h| (h, Some(r.release_id.clone())))
        .collect();
    let baseline: Vec<(String, Option<String>)> = baseline
        .into_iter()
        .map(|h| {
            let from = r.from.get(&h).cloned().flatten();
            (h, from)
        })
        .collect();
    crate::analysis::analyze(
        &window.samples(app, &r.service, &canary),
        &window.samples(app, &r.service, &baseline),
        with_requests,
        crate::analysis::Config::default(),
    )
}

/// The `[analysis.prometheus]` queries for the canaries of `batch` and
/// the hosts still on the old release, over the bake so far.
async fn prometheus_metrics(
    src: &cutover_common::deploy::PrometheusSource,
    r: &Rollout,
    batch: usize,
    window: Duration,
) -> Vec<crate::analysis::MetricResult> {
    let (canary, baseline) = r.analysis_groups(batch);
    let mut old: Vec<String> = baseline
        .iter()
        .filter_map(|h| r.from.get(h).cloned().flatten())
        .collect();
    old.sort();
    old.dedup();
    crate::promql::analyse(
        src,
        &crate::promql::Group {
            hosts: &canary,
            releases: vec![r.release_id.clone()],
        },
        &crate::promql::Group {
            hosts: &baseline,
            releases: old,
        },
        window,
    )
    .await
}

/// Health reports that say a host that took the new release degraded.
fn degraded(app: &App, r: &Rollout) -> Vec<(String, String)> {
    app.fleet
        .unhealthy_among(&r.service, |h| {
            matches!(r.hosts.get(h), Some(HostPhase::Done { .. }))
        })
        .into_iter()
        // The latest report of a host on the new release: during the swap
        // it reported the old one, so an unhealthy report on the new
        // release is about the new instance, however soon it came.
        .filter(|(_, health)| health.release == r.release_id)
        .map(|(h, health)| (h, health.status))
        .collect()
}

/// How often a rollout's progress that sends no command is stored (and
/// shown to watchers), at most.
const PROGRESS_STORE_EVERY: Duration = Duration::from_millis(250);

/// A runner's clock: the wall time when the runner started plus the
/// monotonic time since. A wall clock stepped during a rollout (NTP) does
/// not move its deadlines, and tests that pause tokio's time move them.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall_ms: i64,
    at: tokio::time::Instant,
}

impl Clock {
    fn start() -> Self {
        Clock {
            wall_ms: now_ms(),
            at: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.wall_ms + self.at.elapsed().as_millis() as i64
    }
}

async fn run(
    app: Arc<App>,
    job: Job,
    mut r: Rollout,
    fresh: bool,
    mut events: mpsc::UnboundedReceiver<Asked>,
    mut results: mpsc::UnboundedReceiver<(String, pb::CommandResult)>,
    view: watch::Sender<Rollout>,
) {
    let clock = Clock::start();
    let now_ms = || clock.now_ms();
    let environment = job.spec.targets.environment.clone().unwrap_or_default();
    app.metrics.rollout_started(&r, &environment);
    if fresh {
        app.notify(crate::notify::Event::Started, &r.id);
    }
    // Results that arrive together are recorded together and the rollout
    // advanced once (see `Rollout::step_all`).
    let apply_all = |r: &mut Rollout, evs: Vec<Event>| {
        let before = r.phase.name();
        let effects = r.step_all(evs, now_ms());
        if r.phase.name() != before {
            tracing::info!(deployment = %r.id, service = %r.service, phase = r.phase.name(), "rollout transition");
        }
        effects
    };
    let apply = |r: &mut Rollout, ev: Event| apply_all(r, vec![ev]);
    let mut sent = Sent::new();
    // A transition computed but not stored yet: nothing it asks for is
    // sent (nor the traffic switch run) until a store write succeeds.
    let mut held = false;
    // An operator waiting for the event it sent to be applied.
    let mut reply: Option<tokio::sync::oneshot::Sender<Rollout>> = None;
    let mut window = Window::default();
    // The blue/green switch, when one runs, and where its outcome arrives.
    let mut switching = false;
    let (switch_tx, mut switched) = mpsc::unbounded_channel::<SwitchOutcome>();
    let effects = if fresh {
        apply(&mut r, Event::Start)
    } else {
        r.resume(now_ms())
    };
    if persist(&app, &mut r).await {
        let _ = view.send(r.clone());
        send(&app, &job, &r, &effects, &mut sent).await;
        start_switch(&job, &r, &effects, &mut switching, &switch_tx);
    } else {
        held = true;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut resend = tokio::time::interval(Duration::from_secs(3));
    resend.tick().await;
    // The batch being activated and when it started, for batch_duration.
    let mut batch: Option<(usize, i64)> = None;
    // Changes not stored yet, and when the rollout was last stored.
    let mut dirty = false;
    let mut stored_at = Instant::now();
    while !r.phase.is_terminal() {
        let phase_before = r.phase.clone();
        let now_batch = match r.phase {
            engine::Phase::Activating { batch } => Some(batch),
            _ => None,
        };
        if batch.map(|b| b.0) != now_batch {
            // A batch that led on (not into a rollback) is done.
            if let Some((_, since)) = batch
                && !matches!(r.phase, engine::Phase::RollingBack { .. })
            {
                app.metrics.batch_done(now_ms() - since);
            }
            batch = now_batch.map(|b| (b, now_ms()));
        }
        // `urgent`: stored and shown at once (an operator's pause, abort or
        // promote), not with the next batch of progress.
        let (effects, changed, urgent) = tokio::select! {
            // Cancel-safe: channel receives lose nothing when dropped.
            Some(a) = events.recv() => {
                reply = Some(a.reply);
                (apply(&mut r, a.ev), true, true)
            }
            // Cancel-safe: a wake-up missed between two passes of the loop
            // is seen by the next tick (250 ms) instead.
            () = app.fleet.turned_unhealthy.notified() => {
                let mut out = Vec::new();
                let mut any = false;
                for (host, status) in degraded(&app, &r) {
                    any = true;
                    out.extend(apply(&mut r, Event::Unhealthy { host, status }));
                }
                (out, any, any)
            }
            Some((ok, detail)) = switched.recv() => {
                switching = false;
                (apply(&mut r, Event::Switched { ok, detail }), true, true)
            }
            Some((host, res)) = results.recv() => {
                // Every result already waiting is applied before the one
                // store write below: with thousands of hosts answering at
                // once, one write per batch instead of one per host.
                let as_event = |host, res: pb::CommandResult| Event::Result {
                    host,
                    failure: cutover_common::failure::Failure::from_wire(res.failure),
                    command_id: res.command_id,
                    ok: res.ok,
                    message: res.message,
                };
                let mut evs = vec![as_event(host, res)];
                while evs.len() < 4096
                    && let Ok((host, res)) = results.try_recv()
                {
                    evs.push(as_event(host, res));
                }
                (apply_all(&mut r, evs), true, false)
            }
            // Cancel-safe: interval ticks are not lost by being dropped.
            _ = tick.tick() => {
                let mut out = Vec::new();
                let lost = app.fleet.lost_among(|h| r.hosts.contains_key(h));
                for host in lost {
                    out.extend(apply(&mut r, Event::Lost { host }));
                }
                for (host, status) in degraded(&app, &r) {
                    out.extend(apply(&mut r, Event::Unhealthy { host, status }));
                }
                out.extend(apply(&mut r, Event::Tick));
                // A step's bake opens the window its analysis judges (one
                // opened late, after a coordinator restart, has too few
                // samples at first: inconclusive, judged again later).
                let baking = match r.phase {
                    engine::Phase::Waiting { batch, .. } => Some(batch),
                    _ => r.analysis_wanted,
                };
                if let Some(batch) = baking
                    && r.steps.get(batch).is_some_and(|s| s.analysis)
                {
                    let (canary, baseline) = r.analysis_groups(batch);
                    window.open(&app, &r.service, batch, &[canary, baseline].concat());
                }
                if let Some(batch) = r.analysis_wanted {
                    let mut report = analyse(&app, &r, batch, &window, job.spec.metrics.is_some());
                    if let Some(src) = &job.spec.analysis.prometheus {
                        // Bounded by the source's timeout per query.
                        let more = prometheus_metrics(src, &r, batch, window.age()).await;
                        report.metrics.extend(more);
                        report.verdict = crate::analysis::overall(&report.metrics);
                    }
                    out.extend(apply(&mut r, Event::Analysis { batch, report }));
                }
                // Most ticks change nothing; this also stores progress
                // held back below. (Already dirty: no need to compare the
                // whole rollout.)
                let changed = dirty || *view.borrow() != r;
                (out, changed, false)
            }
            _ = resend.tick() => {
                if held {
                    if !persist(&app, &mut r).await {
                        continue;
                    }
                    held = false;
                    dirty = false;
                    stored_at = Instant::now();
                    let _ = view.send(r.clone());
                }
                // Also what a transition stored late asked for: it is in
                // flight in the rollout and not yet in `sent`.
                let again = due_again(&app, &r, &sent);
                send(&app, &job, &r, &again, &mut sent).await;
                // A switch asked for by a transition stored late.
                let switch: Vec<Effect> = r.switch_effect().into_iter().collect();
                start_switch(&job, &r, &switch, &mut switching, &switch_tx);
                continue;
            }
        };
        // Each transition is stored before its commands are sent. Progress
        // that sends nothing (hosts' answers recorded while a phase goes
        // on) is stored at most every PROGRESS_STORE_EVERY: with 10k hosts
        // answering at once, storing (and copying for watchers) the whole
        // rollout per handful of answers took most of the coordinator's
        // time (BENCHMARKS.md). Answers not stored yet are not lost: after
        // a restart their commands are sent again, and agents answer a
        // repeated command id from their journal without running it again.
        dirty |= changed;
        if dirty
            && (urgent
                || !effects.is_empty()
                || r.phase != phase_before
                || stored_at.elapsed() >= PROGRESS_STORE_EVERY)
        {
            if !persist(&app, &mut r).await {
                // Not stored: do not act. The re-send loop stores it again
                // and then sends what is in flight.
                held = true;
                if let Some(tx) = reply.take() {
                    let _ = tx.send(r.clone());
                }
                continue;
            }
            held = false;
            dirty = false;
            stored_at = Instant::now();
            let _ = view.send(r.clone());
        }
        // The operator who asked hears of the state the event led to.
        if let Some(tx) = reply.take() {
            let _ = tx.send(r.clone());
        }
        // Effects come only from a change, and a change with effects was
        // stored just above (or the loop went on): `held` is false here.
        send(&app, &job, &r, &effects, &mut sent).await;
        start_switch(&job, &r, &effects, &mut switching, &switch_tx);
    }
    // Finished: an operator's late pause or abort is told "not running"
    // rather than accepted and never applied.
    events.close();
    // The end is stored before the service is free for the next
    // deployment, however long the store takes to work again.
    while !persist(&app, &mut r).await {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = view.send(r.clone());
    if let (Some((_, since)), engine::Phase::Succeeded) = (batch, &r.phase) {
        app.metrics.batch_done(now_ms() - since);
    }
    app.metrics.rollout_finished(&r, &environment);
    app.notify(crate::notify::Event::Finished, &r.id);
    app.commands.unsubscribe_deployment(&r.id);
    app.rollouts
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&r.id);
    tracing::info!(deployment = %r.id, service = %r.service, outcome = r.phase.name(), summary = %r.summary(), "rollout finished");
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
