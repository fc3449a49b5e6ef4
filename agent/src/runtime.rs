//! Everything the agent runs on this host: its services, the command
//! journal, supervision, and what the session reports. The session hands
//! commands to [`Runtime::submit`]; results come back on a channel and stay
//! in the journal until the coordinator acknowledges them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};

use crate::command::{Command, CommandResult, Kind};
use crate::journal::Journal;
use crate::releases::{STAGE_RETRY_DELAYS, ServiceDir, StageError};
use crate::service::{Health, OpResult, ProgressEvent, Report, Service, Shared};
use cutover_common::failure::Failure;

type ServiceHandle = Arc<tokio::sync::Mutex<Service>>;

/// The host runtime.
#[derive(Debug)]
pub struct Runtime {
    shared: Arc<Shared>,
    services: Mutex<HashMap<String, ServiceHandle>>,
    journal: Journal,
    inflight: Mutex<Inflight>,
    results: mpsc::UnboundedSender<CommandResult>,
    /// Highest fencing epoch seen per service.
    epochs: Mutex<HashMap<String, u64>>,
    /// Highest coordinator leader term seen (several coordinators on one
    /// PostgreSQL store; 0 with a lone coordinator).
    term: Mutex<u64>,
    /// Published health per service, readable while a command holds the
    /// service.
    published: Mutex<HashMap<String, Arc<Mutex<Health>>>>,
    /// What gives up each service's swap in progress, reachable while the
    /// swap holds the service.
    preempters: Mutex<HashMap<String, crate::service::Preempter>>,
    /// One staging at a time per service (staging does not take the
    /// service itself, so it can run during a swap).
    staging: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ready_sent: std::sync::atomic::AtomicBool,
    /// When supervision last turned (the watchdog's evidence of life).
    last_tick_ms: std::sync::atomic::AtomicI64,
    /// When the last command arrived (see [`Runtime::health_period`]).
    last_command_ms: std::sync::atomic::AtomicI64,
}

/// How the runtime fits on this host: the address services bind, and the
/// service manager it runs under.
#[derive(Debug, Default, Clone)]
pub struct HostIntegration {
    pub service_ip: Option<std::net::IpAddr>,
    /// What deployments may do here.
    pub policy: crate::policy::Policy,
    pub notifier: Arc<crate::sd::Notifier>,
    pub inherited: Arc<crate::sd::Inherited>,
    /// journald's stream socket, for services whose `[run] output` is
    /// `journal` (default /run/systemd/journal/stdout).
    pub journal_socket: Option<std::path::PathBuf>,
}

/// Commands being run, by id: the command, and where its result comes.
type Inflight = HashMap<String, (Command, watch::Receiver<Option<CommandResult>>)>;

/// Who runs a command (see [`Runtime::claim`]).
enum Claim {
    Done(CommandResult),
    /// The id is known for a different command (what it was).
    Conflict(String),
    Wait(watch::Receiver<Option<CommandResult>>),
    Mine(watch::Sender<Option<CommandResult>>),
}

/// Channels the session reads: progress of running commands, and results
/// of commands nobody is waiting for (those finished after a restart).
#[derive(Debug)]
pub struct Outputs {
    pub progress: mpsc::UnboundedReceiver<ProgressEvent>,
    pub results: mpsc::UnboundedReceiver<CommandResult>,
}

/// What `Hello` reports per service.
#[derive(Debug, Clone)]
pub struct ServiceSummary {
    pub service: String,
    pub active_release: Option<String>,
    pub previous_release: Option<String>,
    pub drained: bool,
    pub stopped: bool,
    pub staged: Vec<String>,
}

impl Runtime {
    /// Loads every service under `state_dir/services`, re-attaching to
    /// running instances, then re-runs commands the agent died in the
    /// middle of and starts supervision.
    pub async fn start(
        state_dir: PathBuf,
        host: HostIntegration,
    ) -> std::io::Result<(Arc<Runtime>, Outputs)> {
        crate::sys::reserve_descriptors();
        let (ptx, prx) = mpsc::unbounded_channel();
        let (rtx, rrx) = mpsc::unbounded_channel();
        let journal = Journal::open(state_dir.join("journal"))?;
        let shared = Arc::new(Shared {
            state_dir: state_dir.clone(),
            progress: ptx,
            service_ip: host.service_ip,
            journal_socket: host
                .journal_socket
                .clone()
                .unwrap_or_else(|| crate::journal_out::JOURNAL_STDOUT.into()),
            policy: host.policy.clone(),
            notifier: host.notifier.clone(),
            inherited: host.inherited.clone(),
            health_changed: Default::default(),
            checkers: Default::default(),
            supervision: Default::default(),
        });
        // Fencing: an unreadable file is an error, never read as "no epoch
        // seen" (that would let a late command of an older rollout run).
        let epochs = crate::state::read_json(
            &state_dir.join("journal").join("epochs.json"),
            "the newest rollout (fencing epoch) seen for each service",
            "forgets them, and a late command from an older rollout could run",
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        .unwrap_or_default();
        let term: u64 = crate::state::read_json(
            &state_dir.join("journal").join("term.json"),
            "the newest coordinator leader term seen",
            "forgets it, and a deposed coordinator's late command could run",
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        .unwrap_or_default();
        let mut services = HashMap::new();
        let mut published = HashMap::new();
        let mut preempters = HashMap::new();
        for e in std::fs::read_dir(state_dir.join("services"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if cutover_common::identity::check_name(&name).is_ok() {
                let svc = Service::load(&name, shared.clone())
                    .await
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                published.insert(name.clone(), svc.published());
                preempters.insert(name.clone(), svc.preempter());
                services.insert(name, Arc::new(tokio::sync::Mutex::new(svc)));
            }
        }
        let rt = Arc::new(Runtime {
            shared,
            services: Mutex::new(services),
            journal,
            inflight: Mutex::new(HashMap::new()),
            results: rtx,
            epochs: Mutex::new(epochs),
            term: Mutex::new(term),
            published: Mutex::new(published),
            preempters: Mutex::new(preempters),
            staging: Mutex::new(HashMap::new()),
            ready_sent: std::sync::atomic::AtomicBool::new(false),
            last_tick_ms: std::sync::atomic::AtomicI64::new(cutover_common::time::now_ms()),
            last_command_ms: std::sync::atomic::AtomicI64::new(0),
        });
        for name in host.inherited.unclaimed() {
            tracing::warn!(fd_name = %name, "a socket systemd handed back belongs to no service here: closing it");
            drop(host.inherited.take(&name));
        }
        for cmd in rt.journal.unfinished() {
            tracing::warn!(command = %cmd.id, kind = cmd.kind.name(), "finishing a command interrupted by an agent restart");
            let Claim::Mine(tx) = rt.claim(&cmd) else {
                continue;
            };
            let rt2 = rt.clone();
            tokio::spawn(async move {
                let r = rt2.run(cmd, tx, None).await;
                let _ = rt2.results.send(r);
            });
        }
        // At least as often as the systemd watchdog is pinged: the ping
        // is withheld when supervision has not turned since.
        let every = rt
            .shared
            .notifier
            .watchdog_interval()
            .map_or(SUPERVISE_EVERY, |w| w.min(SUPERVISE_EVERY));
        tokio::spawn(supervise(Arc::downgrade(&rt), every));
        Ok((
            rt,
            Outputs {
                progress: prx,
                results: rrx,
            },
        ))
    }

    /// A result whose session ended before it could be sent: the next (or
    /// current) session sends it, without waiting for a reconnect's Hello.
    pub fn deliver_later(&self, r: CommandResult) {
        let _ = self.results.send(r);
    }

    /// Tells the service manager the agent is up (once: `READY=1`), and
    /// what it is doing (`STATUS=`).
    pub fn notify_status(&self, status: &str) {
        let first = !self
            .ready_sent
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        let msg = if first {
            format!("READY=1\nSTATUS={status}")
        } else {
            format!("STATUS={status}")
        };
        if let Err(e) = self.shared.notifier.notify(&msg) {
            tracing::warn!(error = %e, "notifying systemd failed");
        }
    }

    /// Sends `WATCHDOG=1` when supervision turned within `within`.
    pub fn watchdog_ping(&self, within: Duration) {
        let last = self.last_tick_ms.load(std::sync::atomic::Ordering::Relaxed);
        if cutover_common::time::now_ms() - last <= within.as_millis() as i64 {
            let _ = self.shared.notifier.notify("WATCHDOG=1");
        } else {
            tracing::error!("supervision is stuck: withholding the systemd watchdog ping");
        }
    }

    /// The service manager connection.
    pub fn notifier(&self) -> Arc<crate::sd::Notifier> {
        self.shared.notifier.clone()
    }

    fn service(&self, name: &str) -> ServiceHandle {
        let mut map = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        let svc = Service::empty(name, self.shared.clone());
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), svc.published());
        self.preempters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), svc.preempter());
        let h = Arc::new(tokio::sync::Mutex::new(svc));
        map.insert(name.into(), h.clone());
        h
    }

    /// Replaces `name`'s in-memory state by what its state on disk says,
    /// as an agent restart does: re-attaches to its recorded instances,
    /// finishes or undoes a swap in progress, and stops what was started
    /// but never recorded. After a command panicked half way, nothing it
    /// started runs untracked.
    async fn reload_service(&self, name: &str) {
        let h = self.service(name);
        let mut s = h.lock().await;
        let fresh = match Service::load(name, self.shared.clone()).await {
            Ok(f) => f,
            Err(e) => {
                // Kept as it is in memory: the file is not trusted.
                tracing::error!(service = name, error = %e, "cannot reload the service");
                return;
            }
        };
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), fresh.published());
        self.preempters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), fresh.preempter());
        *s = fresh;
        s.publish();
    }

    /// What gives up `service`'s swap in progress (the service is made
    /// if it is new).
    fn preempter(&self, service: &str) -> crate::service::Preempter {
        let _ = self.service(service);
        self.preempters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
            .expect("registered with the service")
    }

    fn handles(&self) -> Vec<ServiceHandle> {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Runs a command once: a repeated `command_id` gets the recorded (or
    /// in-flight) result.
    pub async fn submit(self: &Arc<Self>, cmd: Command) -> CommandResult {
        self.last_command_ms.store(
            cutover_common::time::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let tx = match self.claim(&cmd) {
            Claim::Done(r) => return r,
            Claim::Conflict(known) => {
                tracing::warn!(
                    command = %cmd.id, known = %known, refused = %cmd.kind.name(),
                    "refused a command whose id is already used for a different command"
                );
                // Not journaled: the id's entry keeps the first command's
                // result.
                return self
                    .result(
                        &cmd,
                        (
                            Err(Report {
                                message: format!(
                                    "refused: command id {} {} ({known}); ids are never reused",
                                    cmd.id,
                                    cutover_common::REUSED_COMMAND_ID
                                ),
                                hooks: vec![],
                                failure: Some(Failure::Refused),
                            }),
                            None,
                        ),
                    )
                    .await;
            }
            Claim::Wait(mut rx) => {
                let r = rx.wait_for(|r| r.is_some()).await.map(|r| r.clone());
                return match r {
                    Ok(r) => r.expect("checked"),
                    Err(_) => {
                        self.result(
                            &cmd,
                            (
                                Err(Report {
                                    message: "the command's first run ended without a result"
                                        .into(),
                                    hooks: vec![],
                                    failure: Some(Failure::Internal),
                                }),
                                None,
                            ),
                        )
                        .await
                    }
                };
            }
            Claim::Mine(tx) => tx,
        };
        let mut cmd = cmd;
        // An activation watches for a rollback from its arrival: one that
        // arrives while this is journaled or waits for the service gives
        // it up before it starts anything.
        let preempted = match &cmd.kind {
            Kind::Activate { service, .. } => Some(self.preempter(service).watch()),
            _ => None,
        };
        if let Kind::Rollback { service, .. } = &cmd.kind
            && self.check_epoch(&cmd).is_ok()
        {
            // A rollback undoes what is in progress instead of waiting for
            // it: a swap under way (a rollout's, or a liveness replacement
            // of the release being left) stops its new instance and keeps
            // the old one, before the rollback takes the service.
            self.preempter(service).preempt();
        }
        if let Kind::Rollback {
            service,
            to: to @ None,
        } = &mut cmd.kind
        {
            let h = self.service(service);
            *to = h.lock().await.state().previous_release.clone();
        }
        if let Err(e) = self.journal.received(&cmd) {
            let r = self
                .result(
                    &cmd,
                    (
                        Err(Report {
                            message: format!("cannot journal the command: {e}"),
                            hooks: vec![],
                            failure: Some(Failure::Internal),
                        }),
                        None,
                    ),
                )
                .await;
            let _ = tx.send(Some(r.clone()));
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&cmd.id);
            return r;
        }
        self.run(cmd, tx, preempted).await
    }

    /// Decides, atomically, who runs command `id`: nobody (it has a
    /// recorded result), someone else (wait for theirs), or the caller
    /// (registered as in flight before this returns, so that a repeated
    /// command arriving meanwhile waits instead of running it twice).
    fn claim(&self, cmd: &Command) -> Claim {
        let id = &cmd.id;
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((running, rx)) = inflight.get(id) {
            if !running.same_request(cmd) {
                return Claim::Conflict(describe(running));
            }
            return Claim::Wait(rx.clone());
        }
        // Not in flight: a finished run journaled its result before it
        // left the map.
        if let Some(e) = self.journal.get(id)
            && let Some(r) = e.result
        {
            if !e.command.same_request(cmd) {
                return Claim::Conflict(describe(&e.command));
            }
            return Claim::Done(r);
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(id.to_string(), (cmd.clone(), rx));
        Claim::Mine(tx)
    }

    async fn run(
        self: &Arc<Self>,
        cmd: Command,
        tx: watch::Sender<Option<CommandResult>>,
        preempted: Option<watch::Receiver<u64>>,
    ) -> CommandResult {
        let outcome = match std::panic::AssertUnwindSafe(self.execute(&cmd, preempted))
            .catch_unwind()
            .await
        {
            Ok(o) => o,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!(command = %cmd.id, service = cmd.kind.service(), panic = %what, "the command panicked; reloading the service from its state on disk");
                self.reload_service(cmd.kind.service()).await;
                (
                    Err(Report {
                        message: format!(
                            "internal error ({what}); the service was reloaded from its state on disk, as after an agent restart"
                        ),
                        hooks: vec![],
                        failure: Some(Failure::Internal),
                    }),
                    None,
                )
            }
        };
        let result = self.result(&cmd, outcome).await;
        if let Err(e) = self.journal.done(&result) {
            tracing::error!(command = %cmd.id, error = %e, "journaling the result failed");
        }
        let _ = tx.send(Some(result.clone()));
        let idle = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.remove(&cmd.id);
            inflight.is_empty()
        };
        if idle {
            crate::sys::trim_heap();
        }
        result
    }

    async fn result(&self, cmd: &Command, done: Done) -> CommandResult {
        let service = cmd.kind.service().to_string();
        let (outcome, after) = done;
        let after = match after {
            Some(a) => a,
            None => After::of(&*self.service(&service).lock().await),
        };
        let (ok, report) = match outcome {
            Ok(r) => (true, r),
            Err(r) => (false, r),
        };
        tracing::info!(command = %cmd.id, kind = cmd.kind.name(), service = %service, ok, failure = report.failure.map(|f| f.name()), "{}", report.message);
        CommandResult {
            command_id: cmd.id.clone(),
            deployment_id: cmd.deployment_id.clone(),
            ok,
            message: report.message,
            service,
            active_release: after.active,
            previous_release: after.previous,
            hooks: report.hooks,
            finished_at_ms: cutover_common::time::now_ms(),
            pid: after.pid,
            drained: after.drained,
            staged: after.staged,
            // Every failure is given a kind where it is made.
            failure: (!ok).then(|| report.failure.unwrap_or(Failure::Internal)),
        }
    }

    /// Fencing: a rollout's commands carry its epoch (the deployment's
    /// sequence number); once a service saw epoch N, commands of older
    /// rollouts are refused, so a stale coordinator cannot undo a newer
    /// rollout. Epoch 0 marks an operator's one-off command (drain, hooks),
    /// which is not fenced. Seen epochs survive agent restarts.
    /// The newest fencing epoch seen for any service.
    pub fn newest_epoch(&self) -> u64 {
        self.epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// The newest coordinator leader term seen.
    pub fn newest_term(&self) -> u64 {
        *self.term.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A coordinator's leader term, heard in its Welcome or a command:
    /// kept (and written down) when newer than any seen.
    pub fn see_term(&self, term: u64) {
        let mut seen = self.term.lock().unwrap_or_else(|p| p.into_inner());
        if term > *seen {
            *seen = term;
            let path = self.shared.state_dir.join("journal").join("term.json");
            let bytes = serde_json::to_vec(&term).expect("serializable");
            if let Err(e) = crate::sys::write_synced(&path, &bytes, 0o600) {
                tracing::error!(error = %e, "recording the leader term failed");
            }
        }
    }

    /// Fencing across coordinators: a command of an older leader term
    /// than one already seen comes from a deposed leader, and is refused.
    fn check_term(&self, cmd: &Command) -> Result<(), Report> {
        if cmd.term == 0 {
            return Ok(());
        }
        let seen = *self.term.lock().unwrap_or_else(|p| p.into_inner());
        if cmd.term < seen {
            return Err(Report {
                message: format!(
                    "refused: the command comes from leader term {}, older than term {seen} already seen: its coordinator is no longer the leader",
                    cmd.term
                ),
                hooks: vec![],
                failure: Some(Failure::Refused),
            });
        }
        self.see_term(cmd.term);
        Ok(())
    }

    fn check_epoch(&self, cmd: &Command) -> Result<(), Report> {
        if cmd.epoch == 0 {
            return Ok(());
        }
        let mut epochs = self.epochs.lock().unwrap_or_else(|p| p.into_inner());
        let seen = epochs.entry(cmd.kind.service().to_string()).or_insert(0);
        if cmd.epoch < *seen {
            return Err(Report {
                message: format!(
                    "refused: command epoch {} is older than epoch {} already seen for this service",
                    cmd.epoch, seen
                ),
                hooks: vec![],
                failure: Some(Failure::Refused),
            });
        }
        if cmd.epoch > *seen {
            *seen = cmd.epoch;
            let path = self.shared.state_dir.join("journal").join("epochs.json");
            let bytes = serde_json::to_vec(&*epochs).expect("serializable");
            if let Err(e) = crate::sys::write_synced(&path, &bytes, 0o600) {
                tracing::error!(error = %e, "recording the fencing epoch failed");
            }
        }
        Ok(())
    }

    async fn execute(&self, cmd: &Command, preempted: Option<watch::Receiver<u64>>) -> Done {
        if let Err(refused) = self.check_term(cmd) {
            return (Err(refused), None);
        }
        if let Err(refused) = self.check_epoch(cmd) {
            return (Err(refused), None);
        }
        #[cfg(test)]
        if cmd.id.starts_with("test-panic") {
            panic!("a test's panic in {}", cmd.id);
        }
        let handle = self.service(cmd.kind.service());
        match &cmd.kind {
            Kind::Stage {
                service,
                release_id,
                version,
                spec,
                ..
            } => (
                async {
                    let url = cmd.kind.artifact().map(|a| a.url).unwrap_or_default();
                    self.shared
                        .policy
                        .check(
                            spec,
                            &url,
                            rustix::process::geteuid().as_raw(),
                            crate::policy::resolve_user,
                        )
                        .map_err(|e| Report {
                            message: e.to_string(),
                            hooks: vec![],
                            failure: Some(Failure::Invalid),
                        })?;
                    let lock = self
                        .staging
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(service.clone())
                        .or_default()
                        .clone();
                    let _staging = lock.lock().await;
                    let dir = ServiceDir::new(&self.shared.state_dir, service);
                    let artifact = cmd.kind.artifact().expect("stage has an artifact");
                    let _ = self.shared.progress.send(ProgressEvent {
                        command_id: cmd.id.clone(),
                        service: service.clone(),
                        phase: "staging".into(),
                        message: format!("fetching {}", artifact.url),
                    });
                    let mut spec = spec.clone();
                    if let Some(ip) = self.shared.service_ip {
                        spec.bind_unspecified_to(ip);
                    }
                    let progress = self.shared.progress.clone();
                    let on_retry = |attempt: usize, e: &StageError, delay: Duration| {
                        let message = format!(
                            "fetching {} failed (attempt {attempt} of {}): {}; trying again in {}s",
                            artifact.url,
                            STAGE_RETRY_DELAYS.len() + 1,
                            cutover_common::error_chain(e),
                            delay.as_secs()
                        );
                        tracing::warn!(command_id = %cmd.id, service = %service, "{message}");
                        let _ = progress.send(ProgressEvent {
                            command_id: cmd.id.clone(),
                            service: service.clone(),
                            phase: "staging".into(),
                            message,
                        });
                    };
                    match dir
                        .stage_retrying(
                            release_id,
                            version,
                            &artifact,
                            &spec,
                            &STAGE_RETRY_DELAYS,
                            on_retry,
                        )
                        .await
                    {
                        Ok(m) => Ok(Report {
                            message: format!(
                                "staged release {} (version {})",
                                m.release_id, m.version
                            ),
                            hooks: vec![],
                            failure: None,
                        }),
                        Err((e, attempts)) => Err(Report {
                            message: format!(
                                "staging {release_id} failed{}: {}",
                                if attempts > 1 {
                                    format!(" after {attempts} attempts")
                                } else {
                                    String::new()
                                },
                                cutover_common::error_chain(&e)
                            ),
                            hooks: vec![],
                            failure: Some(e.failure()),
                        }),
                    }
                }
                .await,
                None,
            ),
            Kind::Activate {
                service,
                release_id,
                include_drained,
            } => {
                let preempted = preempted.unwrap_or_else(|| self.preempter(service).watch());
                on_service(&handle, async |s| {
                    s.activate_unless_preempted(&cmd.id, release_id, *include_drained, preempted)
                        .await
                })
                .await
            }
            Kind::Rollback { to, .. } => {
                on_service(&handle, async |s| s.rollback(&cmd.id, to.as_deref()).await).await
            }
            Kind::Drain { stop, .. } => {
                on_service(&handle, async |s| s.drain(&cmd.id, *stop).await).await
            }
            Kind::Undrain { .. } => on_service(&handle, async |s| s.undrain(&cmd.id).await).await,
            Kind::Stop {
                keep_listeners,
                include_drained,
                ..
            } => {
                on_service(&handle, async |s| {
                    // A deployment's stop (recreate) leaves a drained
                    // service as the operator left it; an operator's own
                    // stop goes ahead.
                    if !cmd.deployment_id.is_empty() {
                        s.refuse_drained(*include_drained)?;
                    }
                    s.stop(&cmd.id, *keep_listeners).await
                })
                .await
            }
            Kind::RunHook { hook, .. } => {
                on_service(&handle, async |s| s.run_hook(hook).await).await
            }
        }
    }

    /// The coordinator stored this result.
    pub fn ack(&self, command_id: &str) {
        self.journal.ack(command_id);
    }

    /// Results to (re)send.
    pub fn unacked(&self) -> Vec<CommandResult> {
        self.journal.unacked()
    }

    /// Health of every service (skipping those locked by a running command
    /// would hide a swap; wait for them instead).
    pub async fn health(&self) -> Vec<Health> {
        let mut out = Vec::new();
        for h in self.handles() {
            out.push(h.lock().await.health());
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// How often to send health reports: every 2 s for 15 minutes after a
    /// command (a deployment is on, and canary analysis compares the probe
    /// samples the reports carry, on canaries and baseline hosts alike:
    /// every target is staged first), every 5 s otherwise. Changes are
    /// reported at once either way.
    pub fn health_period(&self) -> Duration {
        let since = cutover_common::time::now_ms()
            - self
                .last_command_ms
                .load(std::sync::atomic::Ordering::Relaxed);
        if since < 15 * 60 * 1000 {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        }
    }

    /// Resolves when a service's published health changed since the last
    /// call (a change before anyone waits is kept, not lost).
    pub async fn health_changed(&self) {
        self.shared.health_changed.notified().await
    }

    /// The balancers checking the readiness endpoint.
    pub fn checkers(&self) -> &crate::lb::Checkers {
        &self.shared.checkers
    }

    /// Health without waiting for a service busy with a command: the
    /// latest published snapshot of each.
    pub fn health_now(&self) -> Vec<Health> {
        let mut out: Vec<Health> = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|h| {
                h.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .with_fresh_probes()
            })
            .filter(|h| !h.service.is_empty())
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// What `Hello` reports.
    pub async fn summaries(&self) -> Vec<ServiceSummary> {
        let mut out = Vec::new();
        for h in self.handles() {
            let s = h.lock().await;
            let st = s.state();
            out.push(ServiceSummary {
                service: s.name.clone(),
                active_release: st.active_release.clone(),
                previous_release: st.previous_release.clone(),
                drained: st.drained,
                stopped: st.stopped,
                staged: s
                    .dir()
                    .releases()
                    .into_iter()
                    .map(|m| m.release_id)
                    .collect(),
            });
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }
}

/// Runs a command's operation on a service, then publishes its health: the
/// snapshot that health reports and the readiness endpoint read is the
/// state the command left, from the moment its result is known, whatever
/// the operation saved on its way.
/// A command in a few words, for refusals and logs.
fn describe(c: &Command) -> String {
    let mut s = format!("{} of {}", c.kind.name(), c.kind.service());
    if !c.deployment_id.is_empty() {
        s.push_str(&format!(
            " for deployment {} step {}",
            c.deployment_id, c.step
        ));
    }
    if c.epoch != 0 {
        s.push_str(&format!(" at epoch {}", c.epoch));
    }
    s
}

async fn on_service(
    handle: &ServiceHandle,
    op: impl AsyncFnOnce(&mut Service) -> OpResult,
) -> Done {
    let mut s = handle.lock().await;
    let r = op(&mut s).await;
    s.publish();
    // Read before the service is let go: a drain queued behind a swap
    // must not run between the swap and what its result says runs.
    let after = After::of(&s);
    (r, Some(after))
}

/// What a service's state was when a command on it finished.
#[derive(Debug, Clone, Default)]
struct After {
    active: String,
    previous: String,
    pid: u32,
    drained: bool,
    /// The releases on disk (`cutover hosts` shows them).
    staged: Vec<String>,
}

impl After {
    fn of(s: &Service) -> After {
        let h = s.health();
        After {
            active: s.state().active_release.clone().unwrap_or_default(),
            previous: s.state().previous_release.clone().unwrap_or_default(),
            pid: if matches!(h.status.as_str(), "stopped" | "down" | "empty") {
                0
            } else {
                h.pid
            },
            drained: s.state().drained,
            staged: s
                .dir()
                .releases()
                .into_iter()
                .map(|m| m.release_id)
                .collect(),
        }
    }
}

/// An operation's outcome, and the service's state when it ended (None:
/// the command did not hold the service, e.g. a refusal or a stage).
type Done = (OpResult, Option<After>);

/// Measures CPU and memory of every serving instance (sysinfo needs two
/// samples for CPU use, so the system view lives across ticks).
fn measure(rt: &Runtime, sys: &mut sysinfo::System) {
    let published: Vec<Arc<Mutex<Health>>> = rt
        .published
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let pids: Vec<sysinfo::Pid> = published
        .iter()
        .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).pid)
        .filter(|p| *p > 0)
        .map(sysinfo::Pid::from_u32)
        .collect();
    // Also with none: the instances measured before are dropped.
    refresh(sys, &pids);
    for h in published {
        let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = sys.process(sysinfo::Pid::from_u32(h.pid)) {
            h.cpu_percent = p.cpu_usage();
            h.memory_bytes = p.memory();
        }
    }
}

/// Refreshes CPU and memory of `pids` only: the default refresh also
/// lists each process's threads and reads its I/O counters and executable,
/// about ten more system calls a process every 2 s on an idle host.
///
/// sysinfo keeps each process's `/proc/PID/stat` open between refreshes
/// unless told not to, and forgets a process only when it is refreshed
/// and found gone: an agent measuring a new instance after every swap or
/// restart kept one descriptor per instance it had ever measured (36 per
/// 100 deployments). Files are opened per read (one open every 2 s per
/// instance), and processes no longer asked about are dropped here.
fn refresh(sys: &mut sysinfo::System, pids: &[sysinfo::Pid]) {
    sysinfo::set_open_files_limit(0);
    let stale: Vec<sysinfo::Pid> = sys
        .processes()
        .keys()
        .filter(|p| !pids.contains(p))
        .copied()
        .collect();
    if !stale.is_empty() {
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&stale),
            true,
            sysinfo::ProcessRefreshKind::nothing(),
        );
    }
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(pids),
        true,
        sysinfo::ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory(),
    );
}

/// How often supervision looks at every service when nothing wakes it
/// (or as often as the systemd watchdog is pinged, if that is more often):
/// listeners that stopped listening, drift, log files, the instances' CPU
/// and memory. What needs acting on at once wakes it instead (see
/// `crate::wake::Supervision`), and so does a restart's backoff deadline.
pub(crate) const SUPERVISE_EVERY: Duration = Duration::from_secs(5);

/// Acknowledged journal entries kept (two files each: the entry and its
/// ack marker). A repeated command id is answered from them; older ones
/// only take room.
pub const JOURNAL_KEEP: usize = 1000;

/// How often the journal is pruned back to [`JOURNAL_KEEP`] while
/// commands arrive (never while none do). Every 5 minutes, a host taking a
/// deployment every few seconds held 400 entries over the cap between
/// prunes (bench/soak.sh).
pub const JOURNAL_PRUNE_EVERY: Duration = Duration::from_secs(30);

async fn supervise(rt: std::sync::Weak<Runtime>, every: Duration) {
    let Some(woken) = rt.upgrade().map(|r| r.shared.supervision.clone()) else {
        return;
    };
    // Every `SUPERVISE_EVERY`, and at once when an instance exits, a probe
    // changes its verdict or a restart is due: an idle agent wakes rarely
    // (each wake-up of an idle agent is most of its CPU), a crash or a
    // failing probe is handled without waiting for the tick.
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sys = sysinfo::System::new();
    let mut measured = tokio::time::Instant::now();
    let mut pruned = tokio::time::Instant::now();
    // Commands seen when the journal was last pruned: an idle agent does
    // not read its journal again.
    let mut pruned_at_command = 0;
    loop {
        tokio::select! {
            // Cancel-safe: interval ticks are not lost by being dropped.
            _ = tick.tick() => {}
            // Cancel-safe: a `Notified` dropped after `notify_one` passes
            // the permit on.
            _ = woken.woken() => {}
        }
        let Some(rt) = rt.upgrade() else { return };
        rt.last_tick_ms.store(
            cutover_common::time::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if measured.elapsed() >= Duration::from_secs(2) {
            measured = tokio::time::Instant::now();
            measure(&rt, &mut sys);
        }
        let last_command = rt
            .last_command_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if pruned.elapsed() >= JOURNAL_PRUNE_EVERY && last_command != pruned_at_command {
            pruned = tokio::time::Instant::now();
            pruned_at_command = last_command;
            rt.journal.prune(JOURNAL_KEEP);
        }
        for h in rt.handles() {
            // Each service on its own: a slow restart of one must not hold
            // up the others. A service busy with a command (or with a
            // previous pass) is skipped.
            tokio::spawn(async move {
                if let Ok(mut s) = h.try_lock() {
                    s.supervise().await;
                    s.publish();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(id: &str, epoch: u64) -> Command {
        Command {
            id: id.into(),
            deployment_id: "d".into(),
            step: 0,
            epoch,
            term: 0,
            kind: Kind::Stop {
                service: "web".into(),
                keep_listeners: false,
                include_drained: false,
            },
        }
    }

    #[test]
    fn an_instances_cpu_and_memory_are_measured() {
        let me = sysinfo::Pid::from_u32(std::process::id());
        // CPU use is the difference between two samples, and sysinfo
        // reports none while the first sample's CPU time is still zero.
        let burn = || {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(200) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        };
        let mut sys = sysinfo::System::new();
        burn();
        refresh(&mut sys, &[me]);
        burn();
        refresh(&mut sys, &[me]);
        let p = sys.process(me).expect("this process is measured");
        assert!(p.memory() > 1 << 20, "RSS {} bytes", p.memory());
        assert!(p.cpu_usage() > 10.0, "CPU {} %", p.cpu_usage());
    }

    #[tokio::test]
    async fn a_corrupt_state_or_epoch_file_stops_the_start_and_is_left_as_it_was() {
        let start = |dir: &std::path::Path| Runtime::start(dir.into(), Default::default());
        // Fencing epochs.
        let dir = tempfile::tempdir().unwrap();
        let epochs = dir.path().join("journal").join("epochs.json");
        std::fs::create_dir_all(epochs.parent().unwrap()).unwrap();
        std::fs::write(&epochs, b"{\"web\": 7").unwrap();
        let Err(e) = start(dir.path()).await else {
            panic!("started on a corrupt file")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("epochs.json") && msg.contains("fencing epoch"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&epochs).unwrap(), b"{\"web\": 7");
        // A good one is read.
        std::fs::write(&epochs, b"{\"web\": 7}").unwrap();
        let (rt, _o) = start(dir.path()).await.unwrap();
        assert_eq!(rt.epochs.lock().unwrap().get("web"), Some(&7));
        drop(rt);
        // A service's state.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("services").join("web").join("state.json");
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        std::fs::write(&state, b"{\"service\": \"web\", \"instan").unwrap();
        let Err(e) = start(dir.path()).await else {
            panic!("started on a corrupt file")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("state.json") && msg.contains("running instances"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&state).unwrap(),
            b"{\"service\": \"web\", \"instan"
        );
    }

    #[tokio::test]
    async fn the_same_command_arriving_twice_at_once_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        // The claim is atomic: the second arrival waits for the first.
        let Claim::Mine(tx) = rt.claim(&stop("c1", 1)) else {
            panic!("first claim")
        };
        assert!(matches!(rt.claim(&stop("c1", 1)), Claim::Wait(_)));
        assert!(matches!(rt.claim(&stop("c1", 2)), Claim::Conflict(_)));
        drop(tx);
        rt.inflight.lock().unwrap().remove("c1");
        // Many copies at once (a coordinator re-sending while the first
        // copy runs): one run, one journal entry, the same answer.
        let runs = (0..8).map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.submit(stop("c2", 1)).await })
        });
        let results: Vec<CommandResult> = futures_join(runs).await;
        for r in &results {
            assert!(r.ok, "{}", r.message);
            assert_eq!(r, &results[0]);
        }
    }

    #[tokio::test]
    async fn a_known_command_id_carrying_another_command_is_refused_not_answered() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        let first = rt.submit(stop("d1-stop-0", 1)).await;
        assert!(first.ok, "{}", first.message);
        // The same id, another command: refused, and the journal still
        // answers the real command with its own result.
        let forged = rt.submit(stop("d1-stop-0", 9)).await;
        assert!(!forged.ok);
        assert!(
            forged
                .message
                .contains("already used for a different command"),
            "{}",
            forged.message
        );
        assert_eq!(rt.submit(stop("d1-stop-0", 1)).await, first);
        // Nor does a refused forgery move the service's fencing epoch.
        assert!(rt.submit(stop("d1-stop-1", 1)).await.ok);
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn measuring_instances_keeps_no_descriptor_of_the_ones_gone() {
        let mut sys = sysinfo::System::new();
        // Warm up whatever the first refresh opens once.
        let mut warm = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        refresh(&mut sys, &[sysinfo::Pid::from_u32(warm.id())]);
        warm.kill().unwrap();
        warm.wait().unwrap();
        let before = open_descriptors();
        for _ in 0..200 {
            // An instance started, measured twice (as supervision does),
            // then gone: a swap, a crash restart, a liveness replacement.
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            let pid = sysinfo::Pid::from_u32(child.id());
            refresh(&mut sys, &[pid]);
            refresh(&mut sys, &[pid]);
            assert!(sys.process(pid).is_some());
            child.kill().unwrap();
            child.wait().unwrap();
        }
        refresh(&mut sys, &[]);
        let after = open_descriptors();
        assert!(
            after <= before + 2,
            "descriptors grew from {before} to {after} across 200 instances"
        );
        assert!(
            sys.processes().len() <= 1,
            "{} processes kept",
            sys.processes().len()
        );
    }

    #[tokio::test]
    async fn a_command_that_panics_fails_and_its_service_is_reloaded_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        let r = rt.submit(stop("test-panic-1", 1)).await;
        assert!(!r.ok);
        assert!(r.message.contains("internal error"), "{}", r.message);
        assert!(r.message.contains("reloaded"), "{}", r.message);
        // The agent goes on: the next command of the service runs.
        let next = rt.submit(stop("after-1", 1)).await;
        assert!(next.ok, "{}", next.message);
    }

    async fn futures_join(
        handles: impl Iterator<Item = tokio::task::JoinHandle<CommandResult>>,
    ) -> Vec<CommandResult> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn commands_from_an_older_epoch_are_refused_even_after_an_agent_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        assert!(rt.submit(stop("c1", 5)).await.ok);
        let r = rt.submit(stop("c2", 3)).await;
        assert!(!r.ok);
        assert!(
            r.message.contains("epoch 3 is older than epoch 5"),
            "{}",
            r.message
        );
        assert!(
            rt.submit(stop("c3", 0)).await.ok,
            "operator one-off commands are not fenced"
        );
        drop(rt);
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        assert!(
            !rt.submit(stop("c4", 4)).await.ok,
            "the epoch seen survives a restart"
        );
        assert!(rt.submit(stop("c5", 6)).await.ok);
    }

    #[tokio::test]
    async fn a_deposed_coordinators_commands_are_refused_once_a_newer_leader_term_was_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        let of_term = |id: &str, term: u64| Command {
            term,
            ..stop(id, 0)
        };
        assert!(rt.submit(of_term("t1", 4)).await.ok);
        // The new leader's Welcome arrives: term 5.
        rt.see_term(5);
        let r = rt.submit(of_term("t2", 4)).await;
        assert!(!r.ok);
        assert!(
            r.message.contains("leader term 4, older than term 5"),
            "{}",
            r.message
        );
        assert_eq!(r.failure, Some(Failure::Refused));
        assert!(rt.submit(of_term("t3", 5)).await.ok);
        // A lone coordinator's commands (term 0) are not fenced by terms.
        assert!(rt.submit(of_term("t4", 0)).await.ok);
        // An older Welcome does not move the term back.
        rt.see_term(2);
        drop(rt);
        let (rt, _o) = Runtime::start(dir.path().into(), Default::default())
            .await
            .unwrap();
        assert!(
            !rt.submit(of_term("t5", 4)).await.ok,
            "the term seen survives a restart"
        );
        assert!(rt.submit(of_term("t6", 6)).await.ok);
    }
}
