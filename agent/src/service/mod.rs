//! One service on this host: its listening sockets, its serving instance,
//! and the operations the coordinator asks for (activate, rollback, drain,
//! undrain, stop, hooks), each recorded in `state.json` before it acts so
//! that a restarted agent can re-attach, and finish or undo.
//!
//! The swap (`mode = "handover"`), in order (see docs/lifecycle.md):
//! 1. `before_start` hook; bind listeners the release declares;
//! 2. record the swap, start the new instance on the same sockets;
//! 3. wait until it is ready (readiness probe, or `READY=1`) and has stayed
//!    healthy for `min_ready`; `validate` hook;
//! 4. record that the old instance is being stopped; stop signal, `grace`,
//!    then SIGKILL of its process group;
//! 5. record the new release as active; switch `current`/`previous`;
//!    `after_start` hook; check the sockets still listen.
//!
//! Any failure before step 4 stops only the new instance (gracefully: it
//! may already hold connections from the shared queue); the old keeps
//! serving.

mod instances;
mod sockets;
mod supervise;

pub use sockets::enable_tcp_migrate_req;
pub use sockets::established_connections;
pub use supervise::{Health, rotate_log};

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_common::service::{Check, Probe, ServiceSpec, SwapMode};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::hooks::{self, HookOutput};
use crate::instance::Instance;
use crate::probe;
use crate::releases::ServiceDir;
use crate::state::{self, Recovery, ServiceState, SwapPhase, SwapRecord};
use crate::sys;

/// A progress event while a command runs.
#[derive(Debug, Clone)]
pub struct ProgressEvent {
    pub command_id: String,
    pub service: String,
    pub phase: String,
    pub message: String,
}

/// What every service shares.
#[derive(Debug)]
pub struct Shared {
    pub state_dir: PathBuf,
    pub progress: mpsc::UnboundedSender<ProgressEvent>,
    /// Where listeners declared on the unspecified address bind.
    pub service_ip: Option<std::net::IpAddr>,
    /// journald's stream socket (`[run] output = "journal"`).
    pub journal_socket: PathBuf,
    /// What deployments may do on this host.
    pub policy: crate::policy::Policy,
    /// The service manager (systemd), when the agent runs under one.
    pub notifier: Arc<crate::sd::Notifier>,
    /// Sockets systemd handed back at start (its fd store).
    pub inherited: Arc<crate::sd::Inherited>,
    /// Signalled when a service's published health changes (its status,
    /// release or drain), so the session reports it at once instead of at
    /// the next periodic report: the coordinator's rollback decisions wait
    /// on it.
    pub health_changed: tokio::sync::Notify,
    /// The load balancers checking each service's readiness endpoint.
    pub checkers: Arc<crate::lb::Checkers>,
    /// Wakes supervision when an instance exits or a probe's verdict
    /// changes (handed to the tasks watching them).
    pub supervision: crate::wake::Supervision,
}

/// How an operation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub message: String,
    pub hooks: Vec<HookOutput>,
    /// Why it failed (`None` when it succeeded).
    pub failure: Option<Failure>,
}

impl Report {
    /// A failure of kind `kind`.
    pub fn failed(kind: Failure, message: impl Into<String>, hooks: Vec<HookOutput>) -> Self {
        Report {
            message: message.into(),
            hooks,
            failure: Some(kind),
        }
    }
}

/// An operation that failed; `report.message` says why.
pub type OpResult = Result<Report, Report>;

struct Listener {
    name: String,
    addr: SocketAddr,
    fd: OwnedFd,
}

struct Active {
    instance: Instance,
    release: String,
    spec: ServiceSpec,
    /// Must pass once before readiness and liveness count.
    startup: Option<probe::Running>,
    readiness: probe::Running,
    liveness: Option<probe::Running>,
    /// The app's own metrics, scraped from this instance (`[metrics]`).
    scrape: Option<crate::scrape::Running>,
}

/// A service's runtime state.
pub struct Service {
    pub name: String,
    dir: ServiceDir,
    shared: Arc<Shared>,
    state: ServiceState,
    listeners: Vec<Listener>,
    active: Option<Active>,
    backoff: Backoff,
    restart_after: Option<Instant>,
    pub restarts: u32,
    /// Drift of the active release, and when it was last checked.
    drift: Vec<String>,
    drift_checked: Option<Instant>,
    /// When log files were last rotated and pruned.
    housekept: Option<Instant>,
    /// The latest health snapshot, readable without this service's lock
    /// (the readiness endpoint must answer during a swap or a drain).
    published: Arc<std::sync::Mutex<Health>>,
    /// A repaired socket: replace the serving instance.
    replace_soon: bool,
    /// Bumped (without this service's lock) when a rollback arrives: a
    /// swap started before gives up at once, stopping its new instance.
    preempt: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Gives up the swaps in progress of one service (see
/// [`Service::preempter`]).
#[derive(Debug, Clone)]
pub struct Preempter(Arc<tokio::sync::watch::Sender<u64>>);

impl Preempter {
    /// Makes every swap started before now give up.
    pub fn preempt(&self) {
        self.0.send_modify(|g| *g += 1);
    }

    /// What a command about to wait for the service watches: a rollback
    /// arriving while it waits gives it up too.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

/// What an operation that succeeded says.
fn done(message: impl Into<String>, hooks: Vec<HookOutput>) -> Report {
    Report {
        message: message.into(),
        hooks,
        failure: None,
    }
}

use Report as R;
use cutover_common::failure::Failure;

/// The readiness probe used when a spec has none: the instance's `READY=1`.
fn notify_probe() -> Probe {
    Probe {
        check: Check::Notify {},
        initial_delay: Duration::ZERO,
        // Re-checked at once when the app notifies (see probe::start).
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold: 1,
    }
}

impl Service {
    /// A service this agent has not run before.
    pub fn empty(name: &str, shared: Arc<Shared>) -> Service {
        Service {
            name: name.into(),
            dir: ServiceDir::new(&shared.state_dir, name),
            shared,
            state: ServiceState {
                service: name.into(),
                ..Default::default()
            },
            listeners: Vec::new(),
            active: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 0.2),
            restart_after: None,
            restarts: 0,
            drift: Vec::new(),
            drift_checked: None,
            housekept: None,
            published: Default::default(),
            replace_soon: false,
            preempt: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// What gives up this service's swaps in progress, usable while a
    /// swap holds the service (a rollback must not wait behind the swap
    /// it undoes, nor behind a liveness replacement of the release it
    /// leaves).
    pub fn preempter(&self) -> Preempter {
        Preempter(self.preempt.clone())
    }

    /// The published health, shared with the runtime.
    pub fn published(&self) -> Arc<std::sync::Mutex<Health>> {
        self.published.clone()
    }

    /// Updates the published health snapshot.
    pub fn publish(&self) {
        let mut h = self.health();
        let mut p = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if p.pid == h.pid {
            h.cpu_percent = p.cpu_percent;
            h.memory_bytes = p.memory_bytes;
        }
        let changed = (&p.status, &p.release, p.drained) != (&h.status, &h.release, h.drained);
        *p = h;
        drop(p);
        if changed {
            self.shared.health_changed.notify_one();
        }
    }

    /// Loads a service from disk after an agent (re)start: re-attaches to
    /// its instances, takes its listening sockets back from a running
    /// instance, and finishes or undoes a swap that was in progress.
    pub async fn load(
        name: &str,
        shared: Arc<Shared>,
    ) -> Result<Service, crate::state::CorruptFile> {
        let dir = ServiceDir::new(&shared.state_dir, name);
        // Read first: a state file that cannot be trusted changes nothing.
        let mut state = ServiceState::load(&dir.state_file())?.unwrap_or_else(|| ServiceState {
            service: name.into(),
            ..Default::default()
        });
        dir.clean_leftovers();
        // Before any command of this service runs again from the journal.
        hooks::kill_orphans(&dir.root.display().to_string()).await;
        let mut svc = Service::empty(name, shared);
        svc.dir = dir;
        let mut alive: Vec<Instance> = state
            .instances
            .iter()
            .filter_map(|r| Instance::reattach(r, true, &svc.shared.supervision))
            .collect();
        let alive_ids: Vec<String> = alive.iter().map(|i| i.record.id.clone()).collect();
        tracing::info!(service = name, alive = ?alive_ids, swap = ?state.swap, "re-attaching");
        // Sockets first: take them back from whichever instance holds them.
        if let Some(spec) = state
            .active_release
            .as_ref()
            .and_then(|r| svc.dir.meta(r))
            .map(|m| m.spec)
            && spec.swap.mode == SwapMode::Handover
        {
            // Asked first: the instance that serves once recovery is done
            // (a swap being finished serves from the new one's sockets).
            let serving = match &state.swap {
                Some(s) if s.phase == SwapPhase::StoppingOld => s.new_instance.clone(),
                Some(s) => s.old_instance.clone(),
                None => None,
            };
            let mut ordered = alive.clone();
            ordered.sort_by_key(|i| Some(&i.record.id) != serving.as_ref());
            svc.recover_listeners(&spec, &ordered);
        }
        let grace_of = |svc: &Service, release: &str| {
            svc.dir
                .meta(release)
                .map(|m| (m.spec.swap.stop_signal.clone(), m.spec.swap.grace))
                .unwrap_or(("SIGTERM".into(), Duration::from_secs(30)))
        };
        // An instance whose main process died while the agent was down may
        // have left children on the shared sockets: stopped, not left
        // serving unsupervised. (Only where the main process is verifiably
        // gone: one alive that could not be re-attached is not touched.)
        for gone in state.instances.iter().filter(|r| {
            !alive_ids.contains(&r.id) && sys::process_start_time(r.pid) != Some(r.start_time)
        }) {
            let (sig, grace) = grace_of(&svc, &gone.release);
            let sig = sys::signal_by_name(&sig).unwrap_or(rustix::process::Signal::TERM);
            instances::stop_leftovers(name, &gone.id, sig, grace).await;
        }
        match state::recover(state.swap.as_ref(), &alive_ids) {
            Recovery::Nothing => {}
            Recovery::Undo { stop } => {
                if let Some(id) = stop
                    && let Some(pos) = alive.iter().position(|i| i.record.id == id)
                {
                    let inst = alive.remove(pos);
                    let (sig, grace) = grace_of(&svc, &inst.record.release);
                    tracing::warn!(service = name, instance = %id, "undoing a half-done swap: stopping the new instance");
                    inst.stop(
                        sys::signal_by_name(&sig).unwrap_or(rustix::process::Signal::TERM),
                        grace,
                    )
                    .await;
                }
                state.swap = None;
            }
            Recovery::Finish {
                stop_old,
                new_instance,
                target,
            } => {
                if let Some(id) = stop_old
                    && let Some(pos) = alive.iter().position(|i| i.record.id == id)
                {
                    let inst = alive.remove(pos);
                    let (sig, grace) = grace_of(&svc, &inst.record.release);
                    tracing::warn!(service = name, instance = %id, "finishing a half-done swap: stopping the old instance");
                    inst.stop(
                        sys::signal_by_name(&sig).unwrap_or(rustix::process::Signal::TERM),
                        grace,
                    )
                    .await;
                }
                if state.active_release.as_deref() != Some(target.as_str()) {
                    state.previous_release = state.active_release.take();
                    state.active_release = Some(target);
                }
                alive.retain(|i| i.record.id == new_instance);
                state.swap = None;
                // A swap finished serves, whatever it started from.
                state.stopped = false;
            }
            Recovery::Forget => {
                // A new instance may have started without its pid being
                // recorded: find it by the id in its environment.
                if let Some(id) = state.swap.as_ref().and_then(|s| s.new_instance.clone()) {
                    instances::stop_leftovers(
                        name,
                        &id,
                        rustix::process::Signal::TERM,
                        Duration::from_secs(30),
                    )
                    .await;
                }
                state.swap = None;
            }
        }
        // Whatever else is alive and is not the active release's serving
        // instance is a leftover: keep only one serving instance.
        let active_rel = state.active_release.clone();
        let mut serving = None;
        for inst in alive {
            if serving.is_none() && Some(&inst.record.release) == active_rel.as_ref() {
                serving = Some(inst);
            } else {
                let (sig, grace) = grace_of(&svc, &inst.record.release);
                inst.stop(
                    sys::signal_by_name(&sig).unwrap_or(rustix::process::Signal::TERM),
                    grace,
                )
                .await;
            }
        }
        state.instances = serving.iter().map(|i| i.record.clone()).collect();
        svc.state = state;
        if let Some(inst) = serving
            && let Some(meta) = svc.dir.meta(&inst.record.release)
        {
            let active = svc.with_probes(inst, meta.spec, None);
            svc.active = Some(active);
        }
        svc.update_links();
        svc.save();
        Ok(svc)
    }

    /// Records the state (and publishes it); a failure is logged. Where
    /// what comes next must not happen unrecorded, use [`Self::try_save`].
    fn save(&self) {
        if let Err(e) = self.try_save() {
            tracing::error!(service = %self.name, error = %e, "writing state.json failed");
        }
    }

    /// Records the state durably, or says why not.
    fn try_save(&self) -> std::io::Result<()> {
        self.publish();
        let held: Vec<(String, std::os::fd::BorrowedFd<'_>)> = self
            .listeners
            .iter()
            .map(|l| crate::sd::borrow(&l.name, &l.fd))
            .collect();
        self.shared.notifier.store_listeners(&self.name, &held);
        std::fs::create_dir_all(&self.dir.root)
            .and_then(|_| self.state.save(&self.dir.state_file()))
    }

    /// Points `current` and `previous` at the state's releases. Always
    /// followed by `save`, whose directory fsync makes the links durable
    /// with the state (one fsync instead of one per link). A crash between
    /// the two leaves links ahead of `state.json`; the restart's recovery
    /// points them at the recorded releases again.
    fn update_links(&self) {
        if !self.dir.root.exists() {
            return;
        }
        for (link, rel) in [
            ("current", &self.state.active_release),
            ("previous", &self.state.previous_release),
        ] {
            if self.dir.link(link).as_ref() != rel.as_ref()
                && let Err(e) = self.dir.set_link(link, rel.as_deref())
            {
                tracing::error!(service = %self.name, link, error = %e, "switching link failed");
            }
        }
    }

    fn progress(&self, command_id: &str, phase: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(service = %self.name, command = command_id, phase, "{message}");
        let _ = self.shared.progress.send(ProgressEvent {
            command_id: command_id.into(),
            service: self.name.clone(),
            phase: phase.into(),
            message,
        });
    }

    /// The durable state.
    pub fn state(&self) -> &ServiceState {
        &self.state
    }

    /// The release directory of the service.
    pub fn dir(&self) -> &ServiceDir {
        &self.dir
    }

    fn hook_env(&self, release: &str) -> Vec<(String, String)> {
        vec![
            ("CUTOVER_SERVICE".into(), self.name.clone()),
            ("CUTOVER_RELEASE".into(), release.into()),
            (
                "CUTOVER_RELEASE_DIR".into(),
                self.dir.release_dir(release).display().to_string(),
            ),
            (hooks::OWNER_ENV.into(), self.dir.root.display().to_string()),
        ]
    }

    async fn hook(
        &self,
        name: &str,
        spec: &ServiceSpec,
        release: &str,
        out: &mut Vec<HookOutput>,
    ) -> bool {
        let Some(h) = spec.hooks.get(name) else {
            return true;
        };
        let user = match spec
            .run
            .user
            .as_deref()
            .map(crate::instance::lookup_user)
            .transpose()
        {
            Ok(u) => u,
            Err(e) => {
                out.push(HookOutput {
                    name: name.into(),
                    ok: false,
                    status: e.to_string(),
                    output: String::new(),
                    duration_ms: 0,
                });
                return false;
            }
        };
        let o = hooks::run(
            name,
            h,
            &self.dir.release_dir(release),
            &self.hook_env(release),
            user,
        )
        .await;
        let ok = o.ok;
        out.push(o);
        ok
    }

    /// Makes `target` the active release (a swap by the release's mode).
    pub async fn activate(&mut self, command_id: &str, target: &str, force: bool) -> OpResult {
        let preempted = Some(self.preempt.subscribe());
        self.swap_to(command_id, target, force, preempted).await
    }

    /// A coordinator's activation, given up if a rollback arrived since
    /// `preempted` was taken (when the command arrived, before it waited
    /// for the service). A service an operator drained is not touched
    /// unless the deployment includes drained hosts ([`Self::refuse_drained`]).
    pub async fn activate_unless_preempted(
        &mut self,
        command_id: &str,
        target: &str,
        include_drained: bool,
        preempted: tokio::sync::watch::Receiver<u64>,
    ) -> OpResult {
        if preempted.has_changed().unwrap_or(false) {
            return Err(R::failed(
                Failure::Superseded,
                format!("{}; nothing was started", instances::PREEMPTED),
                vec![],
            ));
        }
        self.refuse_drained(include_drained)?;
        if self.state.drained && self.state.stopped {
            return self.make_active_stopped(target);
        }
        self.swap_to(command_id, target, false, Some(preempted))
            .await
    }

    /// A deployment's command on a service an operator drained: refused
    /// (the coordinator counts the host as skipped) unless the deployment
    /// includes drained hosts. Then a drained instance is swapped and
    /// stays drained, and a stopped one is not started.
    pub fn refuse_drained(&self, include_drained: bool) -> Result<(), Report> {
        if self.state.drained && !include_drained {
            let how = if self.state.stopped {
                "drained and stopped (`cutover drain --stop`)"
            } else {
                "drained (`cutover drain`)"
            };
            return Err(R::failed(
                Failure::Drained,
                format!(
                    "{} ({how}); nothing was changed: `cutover undrain` it, or deploy with --include-drained",
                    cutover_common::SKIPPED_DRAINED
                ),
                vec![],
            ));
        }
        Ok(())
    }

    /// Makes `target` the active release of a service stopped by a drain,
    /// without starting it: `undrain` starts it.
    fn make_active_stopped(&mut self, target: &str) -> OpResult {
        if self.dir.meta(target).is_none() {
            return Err(R::failed(
                Failure::Invalid,
                format!("release {target} is not staged on this host"),
                vec![],
            ));
        }
        if self.state.active_release.as_deref() != Some(target) {
            self.state.previous_release = self.state.active_release.take();
            self.state.active_release = Some(target.into());
        }
        self.update_links();
        self.save();
        Ok(done(
            format!(
                "release {target} is active but not started: the service was stopped by `drain --stop`; `cutover undrain` starts it"
            ),
            vec![],
        ))
    }

    /// A swap to `target`; with `preempted`, given up (its new instance
    /// stopped, the old kept) as soon as its value changes.
    async fn swap_to(
        &mut self,
        command_id: &str,
        target: &str,
        force: bool,
        preempted: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> OpResult {
        let Some(meta) = self.dir.meta(target) else {
            return Err(R::failed(
                Failure::Invalid,
                format!("release {target} is not staged on this host"),
                vec![],
            ));
        };
        let spec = meta.spec;
        let running = self
            .active
            .as_ref()
            .is_some_and(|a| !a.instance.has_exited());
        if !force
            && self.state.active_release.as_deref() == Some(target)
            && running
            && !self.state.stopped
        {
            return Ok(done(format!("release {target} is already active"), vec![]));
        }
        let mut hooks = Vec::new();
        if !self.hook("before_start", &spec, target, &mut hooks).await {
            return Err(R::failed(Failure::Hook, "before_start hook failed", hooks));
        }
        if spec.swap.mode == SwapMode::Handover
            && let Err(e) = self.ensure_listeners(&spec)
        {
            return Err(R::failed(Failure::Start, e, hooks));
        }
        if spec.swap.mode == SwapMode::Reuseport {
            let _ = enable_tcp_migrate_req();
        }
        if spec.swap.mode != SwapMode::Handover {
            // The kernel's hash spreads connections over the app's own
            // sockets, not a program left by a steered swap.
            for l in &self.listeners {
                if let Err(e) = sys::detach_reuseport_bpf(&l.fd) {
                    tracing::warn!(service = %self.name, listener = %l.name, error = %e, "detaching the steering program failed");
                }
            }
        }
        let old_release = self.state.active_release.clone();
        if spec.swap.mode == SwapMode::Restart
            && let Some(o) = self.active.take()
        {
            self.progress(
                command_id,
                "stopping",
                format!("restart mode: stopping pid {}", o.instance.pid()),
            );
            let how = Self::stop_active(o).await;
            self.state.instances.clear();
            self.save();
            self.progress(command_id, "stopped", how);
            return self
                .start_new(command_id, target, spec, old_release, hooks, preempted)
                .await;
        }
        // Handover: the old instance stays `active` (and reported serving)
        // until the new one has proved itself.
        self.start_new(command_id, target, spec, old_release, hooks, preempted)
            .await
    }

    async fn start_new(
        &mut self,
        command_id: &str,
        target: &str,
        spec: ServiceSpec,
        old_release: Option<String>,
        mut hooks: Vec<HookOutput>,
        preempted: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> OpResult {
        // The new instance's id is recorded before it exists, so a restarted
        // agent can find it (by CUTOVER_INSTANCE) even if it died before
        // recording the pid.
        let new_id = hex::encode(rand::random::<[u8; 6]>());
        self.state.swap = Some(SwapRecord {
            command_id: command_id.into(),
            target: target.into(),
            phase: SwapPhase::Starting,
            new_instance: Some(new_id.clone()),
            old_instance: self.active.as_ref().map(|o| o.instance.record.id.clone()),
        });
        // A swap is never started unrecorded: a restart could not find
        // the new instance (a full disk, say). Nothing has changed yet.
        if let Err(e) = self.try_save() {
            self.state.swap = None;
            self.save();
            return Err(R::failed(
                Failure::Internal,
                format!(
                    "cannot record the swap in {} ({e}); nothing was started",
                    self.dir.state_file().display()
                ),
                hooks,
            ));
        }
        // Clients are held back from the new instance until it is ready:
        // it gets sockets of its own, steered (see crate::steer).
        let mut steered = if spec.swap.mode == SwapMode::Handover && self.old_serves() {
            match self.steered_sockets(&spec).await {
                Ok(s) => Some(s),
                Err(why) => {
                    tracing::warn!(service = %self.name, "the new instance shares the serving socket and takes clients before it is ready: {why}");
                    None
                }
            }
        } else {
            None
        };
        let new = match self.launch(new_id, target, &spec, steered.as_ref()) {
            Ok(n) => n,
            Err(e) => {
                self.state.swap = None;
                self.keep_serving_listeners();
                self.save();
                return Err(R::failed(
                    Failure::Start,
                    format!("cannot start the new instance: {e}"),
                    hooks,
                ));
            }
        };
        self.state.instances.push(new.instance.record.clone());
        if let Some(s) = &mut self.state.swap {
            s.new_instance = Some(new.instance.record.id.clone());
        }
        // Written: a restart while the new instance is judged stops it
        // from its record, with the spec's stop signal and grace
        // (`Recovery::Undo`), not by a scan for its id.
        let recorded = self.try_save();
        if let Err(e) = recorded {
            return Err(self
                .abandon(
                    new,
                    format!("cannot record the new instance in state.json ({e})"),
                    hooks,
                    steered,
                )
                .await);
        }
        self.progress(
            command_id,
            "starting",
            format!(
                "started {target} as pid {}; waiting until healthy",
                new.instance.pid()
            ),
        );

        let judged = match Self::wait_healthy(&new, preempted.clone()).await {
            Ok(()) => {
                if self.hook("validate", &spec, target, &mut hooks).await {
                    Ok(())
                } else {
                    Err("validate hook failed".to_string())
                }
            }
            Err(e) => Err(e),
        };
        // A rollback that arrived during the validate hook still wins.
        let judged = judged.and_then(|()| match &preempted {
            Some(p) if p.has_changed().unwrap_or(false) => Err(instances::PREEMPTED.to_string()),
            _ => Ok(()),
        });
        // Ready: every new connection goes to the new instance now.
        let judged = judged.and_then(|()| match &steered {
            Some(s) => s
                .steering
                .to_new()
                .map_err(|e| format!("cannot send clients to the new instance ({e})")),
            None => Ok(()),
        });
        if let Err(why) = judged {
            self.progress(
                command_id,
                "failed",
                format!("{why}; stopping the new instance, the old one keeps serving"),
            );
            return Err(self.abandon(new, why, hooks, steered).await);
        }
        if let Some(s) = &mut self.state.swap {
            s.phase = SwapPhase::StoppingOld;
        }
        // The new instance's sockets are the service's from here on, in
        // the record and the systemd fd store (a restart finishing the
        // swap takes them back, not the old ones).
        let mut retired = match &mut steered {
            Some(s) => self.swap_listeners(std::mem::take(&mut s.sockets)),
            None => Vec::new(),
        };
        // The old instance is signalled only once that is recorded: else a
        // restart would undo a swap whose old instance is gone.
        if let Err(e) = self.try_save() {
            if let Some(s) = &mut steered {
                s.sockets = self.swap_listeners(std::mem::take(&mut retired));
            }
            return Err(self
                .abandon(
                    new,
                    format!("cannot record the swap's progress in state.json ({e})"),
                    hooks,
                    steered,
                )
                .await);
        }
        // The agent's copy of the old sockets goes now: they close when the
        // old instance closes its own (on its stop signal, or at exit), and
        // what is queued there moves to the new sockets at once.
        drop(retired);
        if let Some(o) = self.active.take() {
            let pid = o.instance.pid();
            self.progress(
                command_id,
                "stopping_old",
                format!("new instance healthy; stopping old pid {pid}"),
            );
            let how = Self::stop_active(o).await;
            self.progress(command_id, "stopped_old", format!("old pid {pid} {how}"));
        }
        if let Some(s) = steered {
            s.steering.finish();
        }
        if old_release.as_deref() != Some(target) {
            self.state.previous_release = old_release;
        }
        self.state.active_release = Some(target.into());
        self.state.instances = vec![new.instance.record.clone()];
        self.state.swap = None;
        self.state.stopped = false;
        let pid = new.instance.pid();
        // Active before the save, which publishes: the health it reports
        // is the new instance serving, not "down" with no instance.
        self.active = Some(new);
        self.restart_after = None;
        self.update_links();
        self.save();
        if command_id != "supervisor" {
            self.backoff =
                Backoff::new(spec.restart.backoff_initial, spec.restart.backoff_max, 0.2);
        }
        if !self.hook("after_start", &spec, target, &mut hooks).await {
            self.progress(
                command_id,
                "after_start",
                "after_start hook failed (the swap stands)",
            );
        }
        self.check_listeners();
        // Outside handover mode the app binds its own sockets: the agent
        // holds none (an app's SO_REUSEPORT socket would join its group).
        self.listeners.retain(|l| {
            spec.swap.mode == SwapMode::Handover
                && spec
                    .listen
                    .iter()
                    .any(|s| s.name == l.name && s.address == l.addr)
        });
        let keep: Vec<&str> = [
            self.state.active_release.as_deref(),
            self.state.previous_release.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.dir.prune(5, &keep);
        Ok(done(format!("release {target} active (pid {pid})"), hooks))
    }

    /// Whether the serving instance is running and healthy: clients are
    /// held back from a new instance only for one that serves them (an
    /// exited or hung one would hold them in a queue nobody takes from).
    fn old_serves(&self) -> bool {
        self.active.as_ref().is_some_and(|a| {
            !a.instance.has_exited()
                && a.readiness.status.borrow().passing
                && a.liveness
                    .as_ref()
                    .is_none_or(|l| !l.status.borrow().failing(l.probe.failure_threshold))
        })
    }

    /// Gives up a swap before the old instance was signalled: stops the
    /// new instance, forgets the swap, and says why. The old one keeps
    /// serving.
    async fn abandon(
        &mut self,
        new: Active,
        why: String,
        hooks: Vec<HookOutput>,
        steered: Option<sockets::Steered>,
    ) -> Report {
        let new_id = new.instance.record.id.clone();
        // Clients back to the old instance first; what the new one had
        // queued moves to the old sockets when its own close.
        if let Some(s) = &steered
            && let Err(e) = s.steering.to_old()
        {
            tracing::error!(service = %self.name, error = %e, "steering clients back to the old instance failed");
        }
        Self::stop_active(new).await;
        if let Some(s) = steered {
            s.steering.finish();
        }
        self.state.instances.retain(|r| r.id != new_id);
        self.state.swap = None;
        self.keep_serving_listeners();
        self.save();
        let kind = if why.starts_with(instances::PREEMPTED) {
            Failure::Superseded
        } else {
            Failure::Unhealthy
        };
        R::failed(kind, why, hooks)
    }

    /// After a swap given up: sockets bound for the new release alone (a
    /// listener moved to another address) would queue connections nobody
    /// accepts, so only those the serving instance declares are kept.
    fn keep_serving_listeners(&mut self) {
        if let Some(old) = &self.active {
            let keep = &old.spec.listen;
            self.listeners
                .retain(|l| keep.iter().any(|s| s.name == l.name && s.address == l.addr));
        }
    }

    /// Activates the previous release (already staged: no download).
    pub async fn rollback(&mut self, command_id: &str, to: Option<&str>) -> OpResult {
        let Some(prev) = to.map(str::to_string) else {
            return Err(R::failed(
                Failure::Invalid,
                "no previous release to roll back to",
                vec![],
            ));
        };
        let from = self.state.active_release.clone();
        if self.state.drained && self.state.stopped {
            // Stopped by an operator: it stays stopped; undrain starts
            // the release rolled back to.
            return self.make_active_stopped(&prev);
        }
        // A rollback is never given up for another rollback.
        let r = self.swap_to(command_id, &prev, false, None).await;
        if r.is_ok() && from.as_deref() != Some(prev.as_str()) {
            self.state.previous_release = from;
            self.update_links();
            self.save();
        }
        r
    }

    /// Stops the service. With `keep_listeners` the agent goes on holding
    /// the sockets, so that clients queue until a release starts again (a
    /// recreate deployment); otherwise they are closed and clients are
    /// refused.
    pub async fn stop(&mut self, command_id: &str, keep_listeners: bool) -> OpResult {
        // Recorded first: a restart during the stop's grace must not let
        // supervision start the instance again.
        self.state.stopped = true;
        self.save();
        if let Some(a) = self.active.take() {
            let pid = a.instance.pid();
            let how = Self::stop_active(a).await;
            self.progress(command_id, "stopped", format!("pid {pid} {how}"));
        }
        self.state.instances.clear();
        self.state.stopped = true;
        if !keep_listeners {
            self.listeners.clear();
        }
        self.save();
        Ok(done(
            if keep_listeners {
                "service stopped; its sockets stay open"
            } else {
                "service stopped"
            },
            vec![],
        ))
    }

    /// Takes the service out of its load balancers: the readiness
    /// endpoint answers "down" from now, `pre_drain` runs, then the drain
    /// waits until every balancer checking the endpoint has been told
    /// "down" enough times to have taken the host out (or for
    /// `deregistration_delay`, as `[drain]` says; see
    /// [`crate::lb::Deregistration`]). Only then, with `stop`, the
    /// instance gets its stop signal (on which the app contract has it
    /// finish requests in flight and close idle keep-alive connections),
    /// and `post_drain` runs. The result says what was waited for and
    /// why the wait ended. A balancer that did not confirm within
    /// `balancer_timeout` fails the drain: the host stays drained, and is
    /// not stopped.
    ///
    /// Runs with the service held: a swap in progress finishes (or is
    /// undone) first, and a swap arriving later finds the host drained.
    pub async fn drain(&mut self, command_id: &str, stop: bool) -> OpResult {
        self.state.drained = true;
        if stop {
            // Recorded first: a restart during the wait or the stop's
            // grace must not let supervision start the instance again.
            self.state.stopped = true;
        }
        self.save();
        let mut hooks = Vec::new();
        let (spec, release) = match &self.active {
            Some(a) => (Some(a.spec.clone()), a.release.clone()),
            None => (None, String::new()),
        };
        let mut said = Vec::new();
        let mut confirmed = true;
        if let Some(spec) = &spec {
            self.hook("pre_drain", spec, &release, &mut hooks).await;
            let ended = self.wait_for_balancers(command_id, &spec.drain).await;
            confirmed = ended.confirmed();
            said.push(ended.to_string());
        } else {
            said.push("no instance was running: nothing to wait for".into());
        }
        if !confirmed {
            if stop {
                // Not stopped: clients may still be sent here.
                self.state.stopped = false;
                self.save();
            }
            if let Some(spec) = &spec {
                self.hook("post_drain", spec, &release, &mut hooks).await;
            }
            return Err(R::failed(
                Failure::Unavailable,
                format!(
                    "drained (the readiness endpoint answers 503) but not confirmed: {}{}",
                    said.join("; "),
                    if stop {
                        "; the instance was not stopped"
                    } else {
                        ""
                    }
                ),
                hooks,
            ));
        }
        let open = established_connections(&self.ports());
        if stop {
            if let Some(a) = self.active.take() {
                let pid = a.instance.pid();
                let sig = a.spec.swap.stop_signal.clone();
                let since = std::time::Instant::now();
                let how = Self::stop_active(a).await;
                said.push(format!(
                    "stopped pid {pid} with {sig} ({open} connection(s) open): {how} after {:.1}s",
                    since.elapsed().as_secs_f64()
                ));
            }
            self.state.instances.clear();
            self.state.stopped = true;
            // Refuse rather than queue while stopped: clients fail fast.
            self.listeners.clear();
            self.save();
            self.progress(
                command_id,
                "stopped",
                said.last().cloned().unwrap_or_default(),
            );
        } else if let Some(a) = &self.active {
            said.push(format!(
                "pid {} still runs {} with {open} connection(s) open (idle ones from balancers stay until they close them)",
                a.instance.pid(),
                a.release
            ));
        }
        if let Some(spec) = &spec {
            self.hook("post_drain", spec, &release, &mut hooks).await;
        }
        Ok(done(format!("drained: {}", said.join("; ")), hooks))
    }

    /// A drain's wait (see [`Self::drain`]), reporting who it waits for
    /// whenever that changes.
    async fn wait_for_balancers(
        &self,
        command_id: &str,
        spec: &cutover_common::service::DrainSpec,
    ) -> crate::lb::Ended {
        use tokio::time::Instant;
        let checkers = self.shared.checkers.clone();
        let rule = crate::lb::WaitRule::of(spec);
        let mut d = crate::lb::Deregistration::start(
            rule.clone(),
            Instant::now(),
            &checkers.of(&self.name),
        );
        let mut last = String::new();
        loop {
            let now = Instant::now();
            let seen = checkers.of(&self.name);
            if let Some(ended) = d.judge(now, &seen) {
                self.progress(command_id, "deregistered", ended.to_string());
                return ended;
            }
            let awaited = d.awaited(&seen);
            let said = if rule.balancers && !awaited.is_empty() {
                let who: Vec<String> = awaited
                    .iter()
                    .map(|(c, n)| format!("{c} ({n} of {} down answers)", rule.fall))
                    .collect();
                format!(
                    "waiting for balancer(s) to take the host out: {}",
                    who.join(", ")
                )
            } else if rule.balancers && d.on_delay() {
                format!(
                    "no balancer checks this endpoint: waiting deregistration_delay ({})",
                    humantime::format_duration(rule.delay)
                )
            } else if rule.balancers {
                "balancers confirmed; a moment for them to act".to_string()
            } else {
                format!(
                    "waiting deregistration_delay ({})",
                    humantime::format_duration(rule.delay)
                )
            };
            if said != last {
                self.progress(command_id, "draining", said.clone());
                last = said;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reverses a drain: starts the service again if the drain stopped it,
    /// then passes the readiness endpoint again.
    pub async fn undrain(&mut self, command_id: &str) -> OpResult {
        let mut said = String::new();
        if self.state.stopped
            && let Some(rel) = self.state.active_release.clone()
        {
            // Started while still drained: the readiness endpoint says
            // "down" until the new instance is ready and this returns.
            let r = self.swap_to(command_id, &rel, true, None).await?;
            said = format!("; {}", r.message);
        }
        self.state.drained = false;
        self.save();
        let running = match &self.active {
            Some(a) if !a.instance.has_exited() => {
                format!("{} serving as pid {}", a.release, a.instance.pid())
            }
            _ => "no instance running".to_string(),
        };
        Ok(done(format!("undrained: {running}{said}"), vec![]))
    }

    /// Runs one hook of the active release.
    pub async fn run_hook(&mut self, name: &str) -> OpResult {
        let Some(a) = &self.active else {
            return Err(R::failed(Failure::Invalid, "no active release", vec![]));
        };
        let (spec, release) = (a.spec.clone(), a.release.clone());
        if spec.hooks.get(name).is_none() {
            return Err(R::failed(
                Failure::Invalid,
                format!("the active release has no `{name}` hook"),
                vec![],
            ));
        }
        let mut hooks = Vec::new();
        if self.hook(name, &spec, &release, &mut hooks).await {
            Ok(done(format!("hook {name} succeeded"), hooks))
        } else {
            Err(R::failed(
                Failure::Hook,
                format!("hook {name} failed"),
                hooks,
            ))
        }
    }
}
