//! Keeping a service up between commands: supervision passes (exits,
//! restarts with backoff, logs rotated and pruned, drift), and the health
//! snapshot published to the coordinator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::probe::ProbeStatus;
use crate::sys;

use super::*;

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

impl Service {
    /// Stops the service: its instance and its listeners.
    /// Compares the active release with its staging manifest, every
    /// `DRIFT_EVERY` (metadata only: cheap).
    pub(super) fn check_drift(&mut self) {
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

    /// Keeps the newest `keep` log files of past instances.
    pub(super) fn prune_logs(&self, keep: usize) {
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
                    // Children of a crashed process may still hold the
                    // socket: they must not serve unsupervised, nor next to
                    // the replacement. Killed now, while its pid (just
                    // reaped) still names its group; not after the backoff,
                    // when the pid may name another process's group.
                    if let Some(a) = &self.active {
                        let _ = sys::signal_group(a.instance.pid(), rustix::process::Signal::KILL);
                    }
                    let delay = self.backoff.next_delay();
                    tracing::warn!(service = %self.name, release = %release, "instance {}; restarting in {delay:?}", e.description);
                    self.restart_after = Some(now + delay);
                    // Supervision sleeps between its periodic passes: the
                    // restart is due at its deadline, not at the next one.
                    let wake = self.shared.supervision.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        wake.wake();
                    });
                    return;
                }
                Some(t) if now < t => return,
                Some(_) => {}
            }
            self.restarts += 1;
            self.publish();
            if let Some(a) = self.active.take() {
                // Any child started since (by a child) is found by its id.
                super::instances::stop_leftovers(
                    &self.name,
                    &a.instance.record.id,
                    rustix::process::Signal::KILL,
                    Duration::ZERO,
                )
                .await;
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
                if let Some(s) = &a.scrape {
                    h.app = Some(s.status.borrow().clone());
                    h.app_feed = Some(s.status.clone());
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
    /// The app's own metrics of the instance (`[metrics]`), and where they
    /// come from.
    pub app: Option<crate::scrape::Scraped>,
    app_feed: Option<watch::Receiver<crate::scrape::Scraped>>,
}

impl Health {
    /// This snapshot with its probes read again from their feeds.
    pub fn with_fresh_probes(&self) -> Health {
        let mut h = self.clone();
        for ((_, p), feed) in h.probes.iter_mut().zip(&self.feeds) {
            *p = feed.borrow().clone();
        }
        if let Some(feed) = &self.app_feed {
            h.app = Some(feed.borrow().clone());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_log_past_its_size_is_rotated_and_older_ones_shift() {
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
}
