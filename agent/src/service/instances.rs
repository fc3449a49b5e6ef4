//! One instance of a service: launched on the service's sockets with its
//! probes, judged healthy (or not) within its deadline, and stopped with
//! its stop signal and grace.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use cutover_common::service::{ServiceSpec, SwapMode};

use crate::instance::{Instance, Launch};
use crate::probe::{self, ProbeStatus};
use crate::sys;
use tokio::sync::watch;

use super::*;

/// Why a swap was given up for a rollback.
pub(super) const PREEMPTED: &str = "given up: a rollback was asked for";

impl Service {
    /// Starts the probes (and scraper) of `instance`; with `route`, their
    /// connections are steered to it (a new instance whose clients are
    /// held back).
    pub(super) fn with_probes(
        &self,
        instance: Instance,
        spec: ServiceSpec,
        route: Option<std::sync::Arc<crate::steer::Steering>>,
    ) -> Active {
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
            instance: Some(std::sync::Arc::new(crate::attribute::Judged::new(
                instance.pid(),
                route,
            ))),
            wake: self.shared.supervision.clone(),
        };
        let readiness = probe::start(
            spec.probes.readiness.clone().unwrap_or_else(notify_probe),
            ctx.clone(),
            None,
        );
        let startup = spec
            .probes
            .startup
            .clone()
            .map(|p| probe::start(p, ctx.clone(), None));
        // Liveness is judged once the instance was ready: failures while
        // it boots (no worker accepting yet) are not a hang.
        let liveness = spec
            .probes
            .liveness
            .clone()
            .map(|p| probe::start(p, ctx.clone(), Some(readiness.status.clone())));
        let scrape = spec
            .metrics
            .clone()
            .map(|m| crate::scrape::start(m, ctx, readiness.status.clone()));
        Active {
            instance,
            release,
            spec,
            startup,
            readiness,
            liveness,
            scrape,
        }
    }

    pub(super) fn launch(
        &self,
        id: String,
        release: &str,
        spec: &ServiceSpec,
        steered: Option<&super::sockets::Steered>,
    ) -> Result<Active, String> {
        let held = steered.map_or(&self.listeners, |s| &s.sockets);
        let listeners: Vec<(&str, &OwnedFd)> = if spec.swap.mode == SwapMode::Handover {
            spec.listen
                .iter()
                .filter_map(|l| {
                    held.iter()
                        .find(|x| x.name == l.name && x.addr == l.address)
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
            journal_socket: self.shared.journal_socket.clone(),
            wake: self.shared.supervision.clone(),
        })
        .map_err(|e| cutover_common::error_chain(&e))?;
        Ok(self.with_probes(inst, spec.clone(), steered.map(|s| s.steering.clone())))
    }

    /// When the startup probe first passed (now, if there is none);
    /// `None` while it has not.
    pub(super) fn started_at(a: &Active) -> Option<Instant> {
        match &a.startup {
            None => Some(Instant::now() - Duration::from_secs(3600)),
            Some(s) => s.status.borrow().first_pass,
        }
    }

    /// Waits until `a` is ready and has stayed healthy for `min_ready`;
    /// gives up when `preempted` changes (a rollback arrived).
    pub(super) async fn wait_healthy(
        a: &Active,
        preempted: Option<watch::Receiver<u64>>,
    ) -> Result<(), String> {
        let mut preempted = preempted;
        let mut given_up = async move || match &mut preempted {
            // Cancel-safe: `changed` marks nothing seen until it returns.
            Some(p) => {
                let _ = p.changed().await;
            }
            None => std::future::pending::<()>().await,
        };
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
                () = given_up() => return Err(PREEMPTED.into()),
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
                () = given_up() => return Err(PREEMPTED.into()),
            }
        }
    }

    pub(super) fn signal_of(spec: &ServiceSpec) -> rustix::process::Signal {
        sys::signal_by_name(&spec.swap.stop_signal).unwrap_or(rustix::process::Signal::TERM)
    }

    pub(super) async fn stop_active(a: Active) -> String {
        let (sig, grace) = (Self::signal_of(&a.spec), a.spec.swap.grace);
        drop(a.startup);
        drop(a.readiness);
        drop(a.liveness);
        drop(a.scrape);
        a.instance.stop(sig, grace).await
    }
}

/// Stops whatever still runs of instance `id` with no main process to
/// re-attach to: children left behind when it died while the agent was
/// down, or a new instance whose pid was never recorded. Found by the
/// `CUTOVER_INSTANCE` in their environment (they would otherwise go on
/// accepting on the shared sockets, unsupervised): `sig`, up to `grace`,
/// then SIGKILL. Returns how many there were.
pub(super) async fn stop_leftovers(
    service: &str,
    id: &str,
    sig: rustix::process::Signal,
    grace: Duration,
) -> usize {
    let found = crate::instance::stop_by_env(&format!("CUTOVER_INSTANCE={id}"), sig, grace).await;
    if !found.is_empty() {
        tracing::warn!(service, instance = %id, pids = ?found, "stopped processes left of an instance that is gone");
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_is_left_of_a_gone_instance_is_found_by_its_id_and_stopped() {
        let id = format!("test-{}", std::process::id());
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("30")
                .env("CUTOVER_INSTANCE", &id)
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env("CUTOVER_INSTANCE", "someone-else")
            .spawn()
            .unwrap();
        let n = stop_leftovers(
            "web",
            &id,
            rustix::process::Signal::TERM,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(n, 2);
        // Both were ended by SIGTERM (reaped here, as their parent).
        for c in [&mut a, &mut b] {
            let st = c.wait().unwrap();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(15));
        }
        assert_eq!(
            other.try_wait().unwrap(),
            None,
            "another instance's process is left alone"
        );
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(
            stop_leftovers(
                "web",
                &id,
                rustix::process::Signal::TERM,
                Duration::from_secs(5)
            )
            .await,
            0
        );
    }
}
