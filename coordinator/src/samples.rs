//! What canary analysis compares: per-instance windows of the probe
//! counters that agents report. Agents report each probe's lifetime counts
//! (checks, failures) and its latest latencies; a window is what an
//! instance did between the start of a step's bake and the analysis. So
//! the swap gap, a canary's boot, and failures of a release a host ran
//! before never count, and canary and baseline cover the same time. An
//! instance replaced during the window (its pid changed) contributes
//! nothing to it.

use std::collections::HashMap;

use cutover_proto::v1 as pb;

use crate::analysis::Samples;
use crate::app::App;

/// One probe's counters at the start of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    pid: u32,
    checks: u64,
    failed: u64,
}

/// The starts of the windows of one analysis: per (host, probe role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// The batch whose bake this window covers.
    batch: Option<usize>,
    marks: HashMap<(String, String), Mark>,
}

impl Window {
    /// Starts a window for `batch` over `hosts` from their latest reports,
    /// unless one for it is open already.
    pub fn open(&mut self, app: &App, service: &str, batch: usize, hosts: &[String]) {
        if self.batch == Some(batch) {
            return;
        }
        self.batch = Some(batch);
        self.marks.clear();
        app.fleet
            .each_service(hosts.iter().map(String::as_str), service, |h, s| {
                if let Some(r) = &s.health {
                    for p in &r.probes {
                        self.marks.insert(
                            (h.to_string(), p.role.clone()),
                            Mark {
                                pid: r.pid,
                                checks: p.checks,
                                failed: p.failed_checks,
                            },
                        );
                    }
                }
            });
    }

    /// Whether a window for `batch` is open.
    pub fn is_open(&self, batch: usize) -> bool {
        self.batch == Some(batch)
    }

    /// The samples of a group of hosts (each with the release it is meant
    /// to run), from their latest reports against this window's start.
    pub fn samples(&self, app: &App, service: &str, hosts: &[(String, Option<String>)]) -> Samples {
        let mut reports: HashMap<&str, pb::HealthReport> = HashMap::new();
        app.fleet
            .each_service(hosts.iter().map(|(h, _)| h.as_str()), service, |h, s| {
                if let Some(r) = &s.health {
                    reports.insert(h, r.clone());
                }
            });
        let mut out = Samples::default();
        for (host, release) in hosts {
            let Some(r) = reports.get(host.as_str()) else {
                continue;
            };
            // Only reports of the release this group is meant to run.
            if release.as_deref().is_some_and(|rel| rel != r.release) {
                continue;
            }
            for p in &r.probes {
                let start = self.marks.get(&(host.clone(), p.role.clone()));
                add_window(&mut out, start.copied(), r.pid, p);
            }
        }
        out
    }
}

/// Adds what probe `p` of the instance `pid` did since `start` (pure).
fn add_window(out: &mut Samples, start: Option<Mark>, pid: u32, p: &pb::ProbeReport) {
    // No start, another instance, or counters that went back: nothing
    // known about this window.
    let Some(start) = start.filter(|m| m.pid == pid && m.checks <= p.checks) else {
        return;
    };
    let checks = p.checks - start.checks;
    let failed = p.failed_checks.saturating_sub(start.failed).min(checks);
    out.errors.extend(std::iter::repeat_n(1.0, failed as usize));
    out.errors
        .extend(std::iter::repeat_n(0.0, (checks - failed) as usize));
    // The latest latencies, as many as there were checks in the window.
    let n = p.recent_latency_ms.len().min(checks as usize);
    out.latency_ms.extend(
        p.recent_latency_ms[p.recent_latency_ms.len() - n..]
            .iter()
            .map(|l| f64::from(*l)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(checks: u64, failed: u64, latencies: &[u32]) -> pb::ProbeReport {
        pb::ProbeReport {
            role: "liveness".into(),
            checks,
            failed_checks: failed,
            recent_latency_ms: latencies.to_vec(),
            ..Default::default()
        }
    }

    fn mark(pid: u32, checks: u64, failed: u64) -> Option<Mark> {
        Some(Mark {
            pid,
            checks,
            failed,
        })
    }

    #[test]
    fn only_what_the_instance_did_since_the_window_opened_counts() {
        // 40 failures during the swap gap, before the window: not counted.
        let mut s = Samples::default();
        add_window(&mut s, mark(7, 100, 40), 7, &probe(110, 41, &[5, 6, 7, 8]));
        assert_eq!(s.errors.len(), 10);
        assert_eq!(s.errors.iter().sum::<f64>(), 1.0);
        assert_eq!(
            s.latency_ms,
            vec![5.0, 6.0, 7.0, 8.0],
            "at most the window's checks"
        );
        let mut s = Samples::default();
        add_window(&mut s, mark(7, 100, 40), 7, &probe(102, 40, &[5, 6, 7, 8]));
        assert_eq!(s.errors, vec![0.0, 0.0]);
        assert_eq!(s.latency_ms, vec![7.0, 8.0], "the two latest");
    }

    #[test]
    fn an_instance_replaced_during_the_window_or_never_marked_counts_nothing() {
        let mut s = Samples::default();
        add_window(&mut s, mark(7, 100, 0), 8, &probe(20, 20, &[1]));
        add_window(&mut s, None, 7, &probe(20, 20, &[1]));
        add_window(&mut s, mark(7, 100, 0), 7, &probe(50, 0, &[1]));
        assert_eq!(s, Samples::default());
    }
}
