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

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_common::service::{Check, Probe, ServiceSpec, SwapMode};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::hooks::{self, HookOutput};
use crate::instance::{Instance, Launch};
use crate::probe::{self, ProbeStatus};
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
    /// The service manager (systemd), when the agent runs under one.
    pub notifier: Arc<crate::sd::Notifier>,
    /// Sockets systemd handed back at start (its fd store).
    pub inherited: Arc<crate::sd::Inherited>,
    /// Signalled when a service's published health changes (its status,
    /// release or drain), so the session reports it at once instead of at
    /// the next periodic report: the coordinator's rollback decisions wait
    /// on it.
    pub health_changed: tokio::sync::Notify,
}

/// How an operation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub message: String,
    pub hooks: Vec<HookOutput>,
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
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

fn fail(message: impl Into<String>, hooks: Vec<HookOutput>) -> Report {
    Report {
        message: message.into(),
        hooks,
    }
}

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

fn bind_listener(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let l = cutover_common::net::listen(addr, 4096)?.into_std()?;
    // Passed blocking, as systemd does.
    l.set_nonblocking(false)?;
    Ok(OwnedFd::from(l))
}

/// With `SO_REUSEPORT`, connections queued on a closing socket are reset
/// unless the kernel migrates them (`net.ipv4.tcp_migrate_req`, Linux 5.14):
/// turn it on where this agent may.
fn enable_tcp_migrate_req() {
    const P: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    if std::fs::read_to_string(P)
        .map(|v| v.trim() == "1")
        .unwrap_or(true)
    {
        return;
    }
    match std::fs::write(P, "1") {
        Ok(()) => tracing::info!("enabled net.ipv4.tcp_migrate_req for reuseport swaps"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot enable net.ipv4.tcp_migrate_req: reuseport swaps may reset queued connections")
        }
    }
}

/// Rotates `log` when it is larger than `max`: copy to `.1` (shifting older
/// ones up to `keep`), then truncate in place (the app keeps its O_APPEND
/// descriptor and writes on at the start).
pub fn rotate_log(log: &std::path::Path, max: u64, keep: u32) -> std::io::Result<bool> {
    let size = std::fs::metadata(log)?.len();
    if size <= max || keep == 0 {
        return Ok(false);
    }
    let name = |i: u32| PathBuf::from(format!("{}.{i}", log.display()));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(name(i), name(i + 1));
    }
    std::fs::copy(log, name(1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)?;
    Ok(true)
}

/// Open established TCP connections on any of `ports` (from /proc/net).
pub fn established_connections(ports: &[u16]) -> usize {
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "01" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                n += 1;
            }
        }
    }
    n
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
        }
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
    pub async fn load(name: &str, shared: Arc<Shared>) -> Service {
        let dir = ServiceDir::new(&shared.state_dir, name);
        dir.clean_leftovers();
        let mut state = ServiceState::load(&dir.state_file()).unwrap_or_else(|| ServiceState {
            service: name.into(),
            ..Default::default()
        });
        let mut svc = Service::empty(name, shared);
        svc.dir = dir;
        let mut alive: Vec<Instance> = state
            .instances
            .iter()
            .filter_map(|r| Instance::reattach(r, true))
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
            svc.recover_listeners(&spec, &alive);
        }
        let grace_of = |svc: &Service, inst: &Instance| {
            svc.dir
                .meta(&inst.record.release)
                .map(|m| (m.spec.swap.stop_signal.clone(), m.spec.swap.grace))
                .unwrap_or(("SIGTERM".into(), Duration::from_secs(30)))
        };
        match state::recover(state.swap.as_ref(), &alive_ids) {
            Recovery::Nothing => {}
            Recovery::Undo { stop } => {
                if let Some(id) = stop
                    && let Some(pos) = alive.iter().position(|i| i.record.id == id)
                {
                    let inst = alive.remove(pos);
                    let (sig, grace) = grace_of(&svc, &inst);
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
                    let (sig, grace) = grace_of(&svc, &inst);
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
            }
            Recovery::Forget => {
                // A new instance may have started without its pid being
                // recorded: find it by the id in its environment.
                if let Some(id) = state.swap.as_ref().and_then(|s| s.new_instance.clone()) {
                    for pid in sys::pids_with_env(&format!("CUTOVER_INSTANCE={id}")) {
                        tracing::warn!(service = name, instance = %id, pid, "stopping an untracked new instance");
                        let _ = sys::signal_group(pid, rustix::process::Signal::TERM);
                        let deadline = std::time::Instant::now() + Duration::from_secs(30);
                        while sys::group_alive(pid) && std::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let _ = sys::signal_group(pid, rustix::process::Signal::KILL);
                    }
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
                let (sig, grace) = grace_of(&svc, &inst);
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
            let active = svc.with_probes(inst, meta.spec);
            svc.active = Some(active);
        }
        svc.update_links();
        svc.save();
        svc
    }

    fn recover_listeners(&mut self, spec: &ServiceSpec, alive: &[Instance]) {
        let matches = |fd: &OwnedFd, want: SocketAddr| {
            sys::local_addr(fd).is_some_and(|got| {
                got == want || (want.port() == got.port() && want.ip().is_unspecified())
            })
        };
        for (i, l) in spec.listen.iter().enumerate() {
            // The systemd fd store first: it holds the agent's own copy,
            // whatever became of the apps.
            if let Some(fd) = self
                .shared
                .inherited
                .take(&crate::sd::fd_name(&self.name, &l.name))
                .filter(|fd| matches(fd, l.address))
            {
                tracing::info!(service = %self.name, listener = %l.name, "took the listening socket back from the systemd fd store");
                self.listeners.push(Listener {
                    name: l.name.clone(),
                    addr: l.address,
                    fd,
                });
                continue;
            }
            let from_app = alive.iter().find_map(|inst| {
                let fd = inst.take_fd(3 + i as i32).ok()?;
                let got = sys::local_addr(&fd)?;
                (got == l.address
                    || (l.address.port() == got.port() && l.address.ip().is_unspecified()))
                .then_some(fd)
            });
            let fd = match from_app {
                Some(fd) => {
                    tracing::info!(service = %self.name, listener = %l.name, "took the listening socket back from a running instance");
                    fd
                }
                None => match bind_listener(l.address) {
                    Ok(fd) => fd,
                    Err(e) => {
                        tracing::error!(service = %self.name, address = %l.address, error = %e, "cannot bind listener");
                        continue;
                    }
                },
            };
            self.listeners.push(Listener {
                name: l.name.clone(),
                addr: l.address,
                fd,
            });
        }
    }

    fn save(&self) {
        self.publish();
        let held: Vec<(String, std::os::fd::BorrowedFd<'_>)> = self
            .listeners
            .iter()
            .map(|l| crate::sd::borrow(&l.name, &l.fd))
            .collect();
        self.shared.notifier.store_listeners(&self.name, &held);
        if let Err(e) = std::fs::create_dir_all(&self.dir.root)
            .and_then(|_| self.state.save(&self.dir.state_file()))
        {
            tracing::error!(service = %self.name, error = %e, "writing state.json failed");
        }
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

    fn ensure_listeners(&mut self, spec: &ServiceSpec) -> Result<(), String> {
        for l in &spec.listen {
            if self
                .listeners
                .iter()
                .any(|x| x.name == l.name && x.addr == l.address)
            {
                continue;
            }
            let fd = bind_listener(l.address)
                .map_err(|e| format!("binding listener `{}` on {}: {e}", l.name, l.address))?;
            self.listeners.retain(|x| x.name != l.name);
            self.listeners.push(Listener {
                name: l.name.clone(),
                addr: l.address,
                fd,
            });
        }
        Ok(())
    }

    /// Re-`listen()`s a socket an app broke with `shutdown()`. The running
    /// instance saw its socket fail and may not recover by itself (an event
    /// loop that dropped the socket), so it is replaced, new first, on the
    /// next supervision pass.
    fn check_listeners(&mut self) {
        for l in &self.listeners {
            if !sys::is_listening(&l.fd) {
                tracing::warn!(service = %self.name, listener = %l.name, "socket no longer listens; repairing");
                match sys::relisten(&l.fd, l.addr, 4096) {
                    Ok(()) => self.replace_soon = self.active.is_some(),
                    Err(e) => {
                        tracing::error!(service = %self.name, listener = %l.name, error = %e, "repairing the socket failed")
                    }
                }
            }
        }
    }

    fn with_probes(&self, instance: Instance, spec: ServiceSpec) -> Active {
        let release = instance.record.release.clone();
        let ctx = probe::Context {
            spec: spec.clone(),
            release_dir: self.dir.release_dir(&release),
            notify: instance.notify.clone(),
            bound: self
                .listeners
                .iter()
                .filter_map(|l| Some((l.name.clone(), sys::local_addr(&l.fd)?)))
                .collect(),
        };
        let readiness = probe::start(
            spec.probes.readiness.clone().unwrap_or_else(notify_probe),
            ctx.clone(),
        );
        let startup = spec
            .probes
            .startup
            .clone()
            .map(|p| probe::start(p, ctx.clone()));
        let liveness = spec.probes.liveness.clone().map(|p| probe::start(p, ctx));
        Active {
            instance,
            release,
            spec,
            startup,
            readiness,
            liveness,
        }
    }

    fn launch(&self, id: String, release: &str, spec: &ServiceSpec) -> Result<Active, String> {
        let listeners: Vec<(&str, &OwnedFd)> = if spec.swap.mode == SwapMode::Handover {
            spec.listen
                .iter()
                .filter_map(|l| {
                    self.listeners
                        .iter()
                        .find(|x| x.name == l.name)
                        .map(|x| (x.name.as_str(), &x.fd))
                })
                .collect()
        } else {
            Vec::new()
        };
        let inst = Instance::spawn(Launch {
            id,
            release: release.into(),
            release_dir: self.dir.release_dir(release),
            spec,
            listeners,
            run_dir: self.shared.state_dir.join("run"),
            log_dir: self.dir.logs_dir(),
        })
        .map_err(|e| cutover_common::error_chain(&e))?;
        Ok(self.with_probes(inst, spec.clone()))
    }

    /// When the startup probe first passed (now, if there is none);
    /// `None` while it has not.
    fn started_at(a: &Active) -> Option<Instant> {
        match &a.startup {
            None => Some(Instant::now() - Duration::from_secs(3600)),
            Some(s) => s.status.borrow().first_pass,
        }
    }

    /// Waits until `a` is ready and has stayed healthy for `min_ready`.
    async fn wait_healthy(a: &Active) -> Result<(), String> {
        let spec = &a.spec;
        let mut exited = a.instance.exited.clone();
        let mut ready = a.readiness.status.clone();
        let mut startup = a.startup.as_ref().map(|s| s.status.clone());
        let deadline = tokio::time::Instant::now() + spec.swap.ready_timeout;
        let exit_msg = |e: &str| format!("new instance {e} before it was healthy");
        loop {
            if let Some(e) = exited.borrow().clone() {
                return Err(exit_msg(&e.description));
            }
            let st: ProbeStatus = ready.borrow().clone();
            if st.passing && Self::started_at(a).is_some() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let last = st
                    .last
                    .map(|o| o.detail)
                    .unwrap_or_else(|| "no probe result".into());
                return Err(format!(
                    "new instance not ready within {} (last readiness check: {last})",
                    humantime::format_duration(spec.swap.ready_timeout)
                ));
            }
            let startup_changed = async {
                match &mut startup {
                    Some(s) => {
                        let _ = s.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = exited.changed() => {}
                _ = ready.changed() => {}
                _ = startup_changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        // Bake: min_ready counts from the first passing check (after the
        // startup probe passed).
        let first = ready
            .borrow()
            .first_pass
            .unwrap_or_else(Instant::now)
            .max(Self::started_at(a).unwrap_or_else(Instant::now));
        let bake_end = tokio::time::Instant::from_std(first + spec.swap.min_ready);
        let mut live = a
            .liveness
            .as_ref()
            .map(|l| (l.status.clone(), l.probe.failure_threshold));
        loop {
            if let Some(e) = exited.borrow().clone() {
                return Err(exit_msg(&e.description));
            }
            let st = ready.borrow().clone();
            if !st.passing {
                let last = st.last.map(|o| o.detail).unwrap_or_default();
                return Err(format!(
                    "new instance became unhealthy while baking: {last}"
                ));
            }
            if let Some((l, ft)) = &live {
                let ls = l.borrow().clone();
                if ls.failing(*ft) {
                    let last = ls.last.map(|o| o.detail).unwrap_or_default();
                    return Err(format!(
                        "new instance failed its liveness probe while baking: {last}"
                    ));
                }
            }
            if tokio::time::Instant::now() >= bake_end {
                return Ok(());
            }
            let live_changed = async {
                match &mut live {
                    Some((l, _)) => {
                        let _ = l.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = exited.changed() => {}
                _ = ready.changed() => {}
                _ = live_changed => {}
                _ = tokio::time::sleep_until(bake_end) => {}
            }
        }
    }

    fn signal_of(spec: &ServiceSpec) -> rustix::process::Signal {
        sys::signal_by_name(&spec.swap.stop_signal).unwrap_or(rustix::process::Signal::TERM)
    }

    async fn stop_active(a: Active) -> String {
        let (sig, grace) = (Self::signal_of(&a.spec), a.spec.swap.grace);
        drop(a.startup);
        drop(a.readiness);
        drop(a.liveness);
        a.instance.stop(sig, grace).await
    }

    fn hook_env(&self, release: &str) -> Vec<(String, String)> {
        vec![
            ("CUTOVER_SERVICE".into(), self.name.clone()),
            ("CUTOVER_RELEASE".into(), release.into()),
            (
                "CUTOVER_RELEASE_DIR".into(),
                self.dir.release_dir(release).display().to_string(),
            ),
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
        let Some(meta) = self.dir.meta(target) else {
            return Err(fail(
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
            return Ok(fail(format!("release {target} is already active"), vec![]));
        }
        let mut hooks = Vec::new();
        if !self.hook("before_start", &spec, target, &mut hooks).await {
            return Err(fail("before_start hook failed", hooks));
        }
        if spec.swap.mode == SwapMode::Handover
            && let Err(e) = self.ensure_listeners(&spec)
        {
            return Err(fail(e, hooks));
        }
        if spec.swap.mode == SwapMode::Reuseport {
            enable_tcp_migrate_req();
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
                .start_new(command_id, target, spec, old_release, hooks)
                .await;
        }
        // Handover: the old instance stays `active` (and reported serving)
        // until the new one has proved itself.
        self.start_new(command_id, target, spec, old_release, hooks)
            .await
    }

    async fn start_new(
        &mut self,
        command_id: &str,
        target: &str,
        spec: ServiceSpec,
        old_release: Option<String>,
        mut hooks: Vec<HookOutput>,
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
        self.save();
        let new = match self.launch(new_id, target, &spec) {
            Ok(n) => n,
            Err(e) => {
                self.state.swap = None;
                self.save();
                return Err(fail(format!("cannot start the new instance: {e}"), hooks));
            }
        };
        self.state.instances.push(new.instance.record.clone());
        if let Some(s) = &mut self.state.swap {
            s.new_instance = Some(new.instance.record.id.clone());
        }
        // Written: a restart while the new instance is judged stops it
        // from its record, with the spec's stop signal and grace
        // (`Recovery::Undo`), not by a scan for its id.
        self.save();
        self.progress(
            command_id,
            "starting",
            format!(
                "started {target} as pid {}; waiting until healthy",
                new.instance.pid()
            ),
        );

        let judged = match Self::wait_healthy(&new).await {
            Ok(()) => {
                if self.hook("validate", &spec, target, &mut hooks).await {
                    Ok(())
                } else {
                    Err("validate hook failed".to_string())
                }
            }
            Err(e) => Err(e),
        };
        if let Err(why) = judged {
            self.progress(
                command_id,
                "failed",
                format!("{why}; stopping the new instance, the old one keeps serving"),
            );
            let new_id = new.instance.record.id.clone();
            Self::stop_active(new).await;
            self.state.instances.retain(|r| r.id != new_id);
            self.state.swap = None;
            self.save();
            return Err(fail(why, hooks));
        }
        if let Some(s) = &mut self.state.swap {
            s.phase = SwapPhase::StoppingOld;
        }
        self.save();
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
        self.listeners.retain(|l| {
            spec.listen
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
        Ok(fail(format!("release {target} active (pid {pid})"), hooks))
    }

    /// Activates the previous release (already staged: no download).
    pub async fn rollback(&mut self, command_id: &str, to: Option<&str>) -> OpResult {
        let Some(prev) = to.map(str::to_string) else {
            return Err(fail("no previous release to roll back to", vec![]));
        };
        let from = self.state.active_release.clone();
        let r = self.activate(command_id, &prev, false).await;
        if r.is_ok() && from.as_deref() != Some(prev.as_str()) {
            self.state.previous_release = from;
            self.update_links();
            self.save();
        }
        r
    }

    /// Stops the service: its instance and its listeners.
    /// Compares the active release with its staging manifest, every
    /// `DRIFT_EVERY` (metadata only: cheap).
    fn check_drift(&mut self) {
        const DRIFT_EVERY: Duration = Duration::from_secs(10);
        if self
            .drift_checked
            .is_some_and(|t| t.elapsed() < DRIFT_EVERY)
        {
            return;
        }
        self.drift_checked = Some(Instant::now());
        let Some(rel) = self.state.active_release.clone() else {
            self.drift.clear();
            return;
        };
        let mut now = match (
            self.dir.manifest(&rel),
            crate::drift::scan(&self.dir.release_dir(&rel), false),
        ) {
            (Some(recorded), Ok(now)) => crate::drift::compare(&recorded, &now, 8),
            (Some(_), Err(e)) => vec![format!("release directory unreadable: {e}")],
            // Staged before manifests were recorded: nothing to compare.
            (None, _) => Vec::new(),
        };
        // Should run, does not, and no restart is coming: the process is
        // gone (killed by hand, restarts given up).
        let running = self
            .active
            .as_ref()
            .is_some_and(|a| !a.instance.has_exited());
        if !self.state.stopped && !running && self.restart_after.is_none() {
            now.insert(0, format!("no process runs release {rel}"));
        }
        if now != self.drift {
            if !now.is_empty() {
                tracing::warn!(service = %self.name, release = %rel, drift = ?now, "the active release was changed outside Cutover");
            }
            self.drift = now;
        }
    }

    /// Stops the service. With `keep_listeners` the agent goes on holding
    /// the sockets, so that clients queue until a release starts again (a
    /// recreate deployment); otherwise they are closed and clients are
    /// refused.
    pub async fn stop(&mut self, command_id: &str, keep_listeners: bool) -> OpResult {
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
        Ok(fail(
            if keep_listeners {
                "service stopped; its sockets stay open"
            } else {
                "service stopped"
            },
            vec![],
        ))
    }

    fn ports(&self) -> Vec<u16> {
        self.listeners.iter().map(|l| l.addr.port()).collect()
    }

    /// Fails the readiness endpoint, runs `pre_drain`, waits for the load
    /// balancer (`deregistration_delay`, or until no connection is left),
    /// optionally stops the instance, runs `post_drain`.
    pub async fn drain(&mut self, command_id: &str, stop: bool) -> OpResult {
        self.state.drained = true;
        self.save();
        let mut hooks = Vec::new();
        let (spec, release) = match &self.active {
            Some(a) => (Some(a.spec.clone()), a.release.clone()),
            None => (None, String::new()),
        };
        if let Some(spec) = &spec {
            self.hook("pre_drain", spec, &release, &mut hooks).await;
            let delay = spec.drain.deregistration_delay;
            let start = tokio::time::Instant::now();
            let floor = delay.min(Duration::from_secs(1));
            loop {
                let open = established_connections(&self.ports());
                self.progress(command_id, "draining", format!("{open} connection(s) open"));
                let waited = start.elapsed();
                if waited >= delay || (open == 0 && waited >= floor) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250).min(delay.saturating_sub(waited)))
                    .await;
            }
        }
        if stop && let Some(a) = self.active.take() {
            let how = Self::stop_active(a).await;
            self.state.instances.clear();
            self.state.stopped = true;
            // Refuse rather than queue while stopped: clients fail fast.
            self.listeners.clear();
            self.save();
            self.progress(command_id, "stopped", how);
        }
        if let Some(spec) = &spec {
            self.hook("post_drain", spec, &release, &mut hooks).await;
        }
        Ok(fail("drained", hooks))
    }

    /// Reverses a drain: starts the service again if the drain stopped it,
    /// then passes the readiness endpoint again.
    pub async fn undrain(&mut self, command_id: &str) -> OpResult {
        if self.state.stopped
            && let Some(rel) = self.state.active_release.clone()
        {
            self.activate(command_id, &rel, true).await?;
        }
        self.state.drained = false;
        self.save();
        Ok(fail("undrained", vec![]))
    }

    /// Runs one hook of the active release.
    pub async fn run_hook(&mut self, name: &str) -> OpResult {
        let Some(a) = &self.active else {
            return Err(fail("no active release", vec![]));
        };
        let (spec, release) = (a.spec.clone(), a.release.clone());
        if spec.hooks.get(name).is_none() {
            return Err(fail(
                format!("the active release has no `{name}` hook"),
                vec![],
            ));
        }
        let mut hooks = Vec::new();
        if self.hook(name, &spec, &release, &mut hooks).await {
            Ok(fail(format!("hook {name} succeeded"), hooks))
        } else {
            Err(fail(format!("hook {name} failed"), hooks))
        }
    }

    /// Keeps the newest `keep` log files of past instances.
    fn prune_logs(&self, keep: usize) {
        let current: Vec<PathBuf> = self.state.instances.iter().map(|i| i.log.clone()).collect();
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> =
            std::fs::read_dir(self.dir.logs_dir())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    !current.iter().any(|c| {
                        e.path()
                            .to_string_lossy()
                            .starts_with(&*c.to_string_lossy())
                    })
                })
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect();
        if logs.len() <= keep {
            return;
        }
        logs.sort();
        for (_, p) in logs.iter().take(logs.len() - keep) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// One supervision pass: restart an instance that exited (with
    /// backoff), replace one that fails liveness (replacement first).
    pub async fn supervise(&mut self) {
        self.check_drift();
        // Housekeeping of the log files every 10 s.
        let housekeeping = self
            .housekept
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if housekeeping {
            self.housekept = Some(Instant::now());
        }
        if housekeeping
            && let Some(a) = &self.active
            && let Ok(true) = rotate_log(
                &a.instance.record.log,
                a.spec.logs.max_bytes,
                a.spec.logs.keep,
            )
        {
            tracing::info!(service = %self.name, log = %a.instance.record.log.display(), "rotated instance log");
        }
        if housekeeping {
            self.prune_logs(20);
        }
        if self.state.stopped || self.state.swap.is_some() {
            return;
        }
        self.check_listeners();
        let Some(release) = self.state.active_release.clone() else {
            return;
        };
        let (exited, live_failing) = match &self.active {
            Some(a) => (
                a.instance.exited.borrow().clone(),
                Self::started_at(a).is_some()
                    && a.liveness
                        .as_ref()
                        .is_some_and(|l| l.status.borrow().failing(l.probe.failure_threshold)),
            ),
            None => (
                Some(crate::instance::Exit {
                    description: "is not running".into(),
                }),
                false,
            ),
        };
        if let Some(e) = exited {
            let on_failure = self
                .dir
                .meta(&release)
                .map(|m| m.spec.restart.on_failure)
                .unwrap_or(true);
            if !on_failure {
                return;
            }
            let now = Instant::now();
            match self.restart_after {
                None => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(service = %self.name, release = %release, "instance {}; restarting in {delay:?}", e.description);
                    self.restart_after = Some(now + delay);
                    // Supervision sleeps between its periodic passes: the
                    // restart is due at its deadline, not at the next one.
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        crate::runtime::wake_supervision();
                    });
                    return;
                }
                Some(t) if now < t => return,
                Some(_) => {}
            }
            self.restarts += 1;
            self.publish();
            if let Some(a) = self.active.take() {
                // Children of a crashed process still hold the socket: they
                // must not serve next to the replacement.
                let _ = sys::signal_group(a.instance.pid(), rustix::process::Signal::KILL);
            }
            self.state.instances.clear();
            let r = self.activate("supervisor", &release, true).await;
            self.restart_after = None;
            if let Err(r) = r {
                tracing::error!(service = %self.name, "restart failed: {}", r.message);
            }
        } else if std::mem::take(&mut self.replace_soon) {
            tracing::warn!(service = %self.name, release = %release, "replacing the instance after a socket repair");
            if let Err(r) = self.activate("supervisor", &release, true).await {
                tracing::error!(service = %self.name, "replacement after a socket repair failed: {}", r.message);
            }
        } else if live_failing {
            tracing::warn!(service = %self.name, release = %release, "liveness probe failing; starting a replacement before stopping it");
            self.restarts += 1;
            // Reported before the replacement (which takes its bake time):
            // the coordinator rolls back a new release that turns unhealthy.
            self.publish();
            if let Err(r) = self.activate("supervisor", &release, true).await {
                tracing::error!(service = %self.name, "liveness replacement failed: {}", r.message);
            }
        } else if self
            .active
            .as_ref()
            .is_some_and(|a| a.readiness.status.borrow().passing)
        {
            self.backoff.reset();
        }
    }

    /// A snapshot for health reports and the readiness endpoint.
    pub fn health(&self) -> Health {
        let mut h = Health {
            service: self.name.clone(),
            release: self.state.active_release.clone().unwrap_or_default(),
            drained: self.state.drained,
            restarts: self.restarts,
            drift: self.drift.clone(),
            ..Default::default()
        };
        match &self.active {
            _ if self.state.stopped => h.status = "stopped".into(),
            None => {
                h.status = if self.state.active_release.is_some() {
                    "down".into()
                } else {
                    "empty".into()
                }
            }
            Some(a) => {
                h.pid = a.instance.pid();
                let ready = a.readiness.status.borrow().clone();
                let live = a
                    .liveness
                    .as_ref()
                    .map(|l| (l.status.borrow().clone(), l.probe.failure_threshold));
                let live_ok = live.as_ref().is_none_or(|(s, ft)| !s.failing(*ft));
                h.status = if a.instance.has_exited() {
                    "down".into()
                } else if !ready.passing || !live_ok {
                    "unhealthy".into()
                } else if self.state.drained {
                    "drained".into()
                } else {
                    "serving".into()
                };
                h.probes.push(("readiness".into(), ready));
                h.feeds.push(a.readiness.status.clone());
                if let Some((s, _)) = live {
                    h.probes.push(("liveness".into(), s));
                }
                if let Some(l) = &a.liveness {
                    h.feeds.push(l.status.clone());
                }
            }
        }
        h
    }
}

/// A health snapshot of one service.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub service: String,
    pub release: String,
    /// serving | unhealthy | drained | down | stopped | empty
    pub status: String,
    pub pid: u32,
    pub drained: bool,
    pub restarts: u32,
    pub probes: Vec<(String, ProbeStatus)>,
    /// CPU use of the instance (percent of one core) and resident memory.
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    /// How the active release differs from what was staged (empty: not
    /// at all).
    pub drift: Vec<String>,
    /// Where `probes` come from, in the same order: a report between two
    /// publications carries the probes' counts and latencies as they are
    /// now (canary analysis compares them), not as they were when the
    /// status was last published.
    feeds: Vec<watch::Receiver<ProbeStatus>>,
}

impl Health {
    /// This snapshot with its probes read again from their feeds.
    pub fn with_fresh_probes(&self) -> Health {
        let mut h = self.clone();
        for ((_, p), feed) in h.probes.iter_mut().zip(&self.feeds) {
            *p = feed.borrow().clone();
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_size_is_rotated_and_older_ones_shift() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("i.log");
        std::fs::write(&log, vec![b'a'; 100]).unwrap();
        assert!(!rotate_log(&log, 100, 2).unwrap(), "at the limit: kept");
        std::fs::write(&log, vec![b'b'; 101]).unwrap();
        assert!(rotate_log(&log, 100, 2).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(d.path().join("i.log.1")).unwrap(),
            vec![b'b'; 101]
        );
        std::fs::write(&log, vec![b'c'; 101]).unwrap();
        rotate_log(&log, 100, 2).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("i.log.2")).unwrap(),
            vec![b'b'; 101]
        );
        assert_eq!(
            std::fs::read(d.path().join("i.log.1")).unwrap(),
            vec![b'c'; 101]
        );
    }

    #[test]
    fn established_connections_are_counted_by_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(established_connections(&[port]), 0);
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _s = l.accept().unwrap();
        assert_eq!(established_connections(&[port]), 1);
    }
}
