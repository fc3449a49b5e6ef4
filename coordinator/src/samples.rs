//! What canary analysis compares: per-instance windows of the counters
//! that agents report. Agents report each probe's lifetime counts (checks,
//! failures) and its latest latencies, and, with `[metrics]`, the app's own
//! request counters and latency histogram scraped from that instance; a
//! window is what an instance did between the start of a step's bake and
//! the analysis. So
//! the swap gap, a canary's boot, and failures of a release a host ran
//! before never count, and canary and baseline cover the same time. An
//! instance replaced during the window (its pid changed) contributes
//! nothing to it. What a host had not reported yet when the window opened
//! (a canary's first scrape comes a moment after it is ready) is marked at
//! its first report during the bake.

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

/// An instance's request counters at the start of a window.
#[derive(Debug, Clone, PartialEq)]
struct AppMark {
    pid: u32,
    requests: u64,
    errors: u64,
    latency: Vec<(f64, u64)>,
}

impl AppMark {
    fn of(pid: u32, a: &pb::AppMetricsReport) -> AppMark {
        AppMark {
            pid,
            requests: a.requests,
            errors: a.errors,
            latency: a.latency.iter().map(|b| (b.le_seconds, b.count)).collect(),
        }
    }
}

/// The starts of the windows of one analysis: per (host, probe role), and
/// per host for the app's own metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// The batch whose bake this window covers, and when it opened.
    batch: Option<usize>,
    opened: Option<std::time::Instant>,
    marks: HashMap<(String, String), Mark>,
    app: HashMap<String, AppMark>,
}

impl Window {
    /// Starts a window for `batch` over `hosts` from their latest reports;
    /// while it is open, marks what had not been reported yet when it
    /// opened (a canary's first scrape, say), from its first report.
    pub fn open(&mut self, app: &App, service: &str, batch: usize, hosts: &[String]) {
        if self.batch != Some(batch) {
            self.batch = Some(batch);
            self.opened = Some(std::time::Instant::now());
            self.marks.clear();
            self.app.clear();
        }
        app.fleet
            .each_service(hosts.iter().map(String::as_str), service, |h, s| {
                if let Some(r) = &s.health {
                    if let Some(a) = r.app.as_ref().filter(|a| a.error.is_empty()) {
                        self.app
                            .entry(h.to_string())
                            .or_insert_with(|| AppMark::of(r.pid, a));
                    }
                    for p in &r.probes {
                        self.marks
                            .entry((h.to_string(), p.role.clone()))
                            .or_insert(Mark {
                                pid: r.pid,
                                checks: p.checks,
                                failed: p.failed_checks,
                            });
                    }
                }
            });
    }

    /// How long the window has been open.
    pub fn age(&self) -> std::time::Duration {
        self.opened.map(|t| t.elapsed()).unwrap_or_default()
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
            // A failing scrape says nothing of this window.
            if let Some(a) = r.app.as_ref().filter(|a| a.error.is_empty()) {
                add_requests(
                    &mut out,
                    self.app.get(host.as_str()),
                    &AppMark::of(r.pid, a),
                );
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

/// At most this many request samples per host and window, failures and
/// successes scaled together so the ratio is kept (the U test's cost
/// grows with them).
const MAX_REQUEST_SAMPLES: u64 = 5_000;

/// Adds the requests the instance answered since `start` (pure).
fn add_requests(out: &mut Samples, start: Option<&AppMark>, now: &AppMark) {
    let Some(start) = start.filter(|m| m.pid == now.pid && m.requests <= now.requests) else {
        return;
    };
    let n = now.requests - start.requests;
    let errors = now.errors.saturating_sub(start.errors).min(n);
    let scale = |k: u64| {
        if n > MAX_REQUEST_SAMPLES {
            (k as f64 * MAX_REQUEST_SAMPLES as f64 / n as f64).round() as usize
        } else {
            k as usize
        }
    };
    out.requests.extend(std::iter::repeat_n(1.0, scale(errors)));
    out.requests
        .extend(std::iter::repeat_n(0.0, scale(n - errors)));
    // Latency: each bucket's new requests at the bucket's upper bound (the
    // last finite bound for the open one).
    let mut below = 0u64;
    let mut last_finite = 0.0f64;
    for (le, count) in &now.latency {
        let before = start
            .latency
            .iter()
            .find(|(l, _)| l == le)
            .map_or(0, |(_, c)| *c);
        let cumulative = count.saturating_sub(before);
        let here = cumulative.saturating_sub(below);
        below = below.max(cumulative);
        let ms = if le.is_finite() {
            last_finite = *le;
            le * 1000.0
        } else {
            last_finite * 1000.0
        };
        out.request_latency_ms
            .extend(std::iter::repeat_n(ms, scale(here)));
    }
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

    fn app(pid: u32, requests: u64, errors: u64, latency: &[(f64, u64)]) -> AppMark {
        AppMark {
            pid,
            requests,
            errors,
            latency: latency.to_vec(),
        }
    }

    #[test]
    fn real_requests_count_from_the_window_start_with_their_latency_buckets() {
        let start = app(
            7,
            1000,
            400,
            &[(0.01, 900), (0.1, 990), (f64::INFINITY, 1000)],
        );
        let now = app(
            7,
            1100,
            420,
            &[(0.01, 960), (0.1, 1080), (f64::INFINITY, 1100)],
        );
        let mut s = Samples::default();
        add_requests(&mut s, Some(&start), &now);
        assert_eq!(s.requests.len(), 100);
        assert_eq!(s.requests.iter().sum::<f64>(), 20.0, "20 % of the window");
        // 60 at <= 10 ms, 30 at <= 100 ms, 10 above (counted at 100 ms).
        let at = |ms: f64| s.request_latency_ms.iter().filter(|v| **v == ms).count();
        assert_eq!((at(10.0), at(100.0)), (60, 40));
        // Another instance, or no start: nothing.
        let mut s = Samples::default();
        add_requests(&mut s, Some(&start), &app(8, 1100, 420, &[]));
        add_requests(&mut s, None, &now);
        assert_eq!(s, Samples::default());
    }

    #[test]
    fn a_busy_window_is_scaled_down_keeping_its_error_ratio() {
        let mut s = Samples::default();
        add_requests(
            &mut s,
            Some(&app(1, 0, 0, &[])),
            &app(1, 50_000, 10_000, &[]),
        );
        assert_eq!(s.requests.len() as u64, MAX_REQUEST_SAMPLES);
        assert_eq!(s.requests.iter().sum::<f64>(), 1000.0);
    }
}
