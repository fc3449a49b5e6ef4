//! The readiness endpoint load balancers check: `GET /ready/<service>`
//! answers 200 while the service serves and is not drained, 503 otherwise
//! (with the reason); `GET /ready` lists every service as JSON.
//!
//! Every check is recorded ([`Checkers`]): who asked (address and
//! `User-Agent`), when, and whether it was told "down". A drain goes on
//! only once every balancer checking the service has been told "down"
//! enough times in a row to have taken the host out ([`Deregistration`],
//! docs/load-balancers.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

fn answer(rt: &Runtime, path: &str) -> (StatusCode, String) {
    let health = rt.health_now();
    if path == "/metrics" {
        return (StatusCode::OK, metrics(&health));
    }
    match path.strip_prefix("/ready") {
        Some("") | Some("/") => {
            let all: Vec<serde_json::Value> = health
                .iter()
                .map(|h| serde_json::json!({"service": h.service, "release": h.release, "status": h.status, "ready": h.status == "serving"}))
                .collect();
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&all).unwrap_or_default() + "\n",
            )
        }
        Some(rest) => {
            let name = rest.trim_start_matches('/');
            match health.iter().find(|h| h.service == name) {
                Some(h) if h.status == "serving" => {
                    (StatusCode::OK, format!("serving {}\n", h.release))
                }
                Some(h) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", h.status)),
                None => (
                    StatusCode::NOT_FOUND,
                    format!("no service `{name}` on this host\n"),
                ),
            }
        }
        None => (StatusCode::NOT_FOUND, "try /ready/<service>\n".into()),
    }
}

/// A label value as Prometheus' text format writes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The host's services as Prometheus metrics (text format 0.0.4), at
/// `GET /metrics` on the readiness port: what a host dashboard or an
/// alert on one host needs without asking the coordinator.
pub fn metrics(health: &[crate::service::Health]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&crate::service::Health) -> f64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for h in health {
                out.push_str(&format!(
                    "{name}{{service=\"{}\",release=\"{}\"}} {}\n",
                    label(&h.service),
                    label(&h.release),
                    value(h)
                ));
            }
        };
    family(
        "cutover_agent_service_serving",
        "gauge",
        "Whether the service's instance serves (1) or not (0: unhealthy, drained, down, stopped)",
        &|h| f64::from(u8::from(h.status == "serving")),
    );
    family(
        "cutover_agent_service_drained",
        "gauge",
        "Whether an operator drained the service on this host",
        &|h| f64::from(u8::from(h.drained)),
    );
    family(
        "cutover_agent_service_drifted",
        "gauge",
        "Whether the active release differs from what Cutover staged (cutover drift)",
        &|h| f64::from(u8::from(!h.drift.is_empty())),
    );
    family(
        "cutover_agent_service_restarts_total",
        "counter",
        "Restarts of the service's instance after it exited, since the agent started",
        &|h| f64::from(h.restarts),
    );
    family(
        "cutover_agent_service_cpu_percent",
        "gauge",
        "CPU use of the instance, percent of one core",
        &|h| f64::from(h.cpu_percent),
    );
    family(
        "cutover_agent_service_memory_bytes",
        "gauge",
        "Resident memory of the instance",
        &|h| h.memory_bytes as f64,
    );
    out.push_str(&format!(
        "# HELP cutover_agent_info The agent's version\n# TYPE cutover_agent_info gauge\ncutover_agent_info{{version=\"{}\"}} 1\n",
        label(cutover_common::VERSION)
    ));
    out
}

/// Serves the endpoint on `addr` until `shutdown`, within the bounds of
/// an endpoint anyone on the network can reach
/// ([`cutover_common::net::HttpLimits`]): balancers' checks are a few
/// connections, and a flood of idle ones cannot take the descriptors the
/// agent needs to journal commands.
pub async fn serve(
    addr: SocketAddr,
    rt: Arc<Runtime>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "readiness endpoint listening");
    cutover_common::net::serve_http(
        listener,
        cutover_common::net::HttpLimits::default(),
        shutdown,
        "readiness",
        move |peer: SocketAddr, req: Request<Incoming>| {
            let path = req.uri().path();
            let is_metrics = path == "/metrics";
            let (status, body) = answer(&rt, path);
            if let Some(service) = path.strip_prefix("/ready/")
                && status != StatusCode::NOT_FOUND
            {
                let agent = req
                    .headers()
                    .get(hyper::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .chars()
                    .take(64)
                    .collect();
                rt.checkers().record(
                    service,
                    CheckerId {
                        addr: peer.ip().to_canonical(),
                        agent,
                    },
                    Instant::now(),
                    status == StatusCode::OK,
                );
            }
            async move {
                Response::builder()
                    .status(status)
                    .header(
                        "content-type",
                        if is_metrics {
                            "text/plain; version=0.0.4; charset=utf-8"
                        } else {
                            "text/plain"
                        },
                    )
                    .body(Full::new(Bytes::from(body)))
                    .expect("valid response")
            }
        },
    )
    .await;
    Ok(())
}

/// Who checks a service's readiness: one balancer, told apart by the
/// address its checks come from and the `User-Agent` it sends (two
/// HAProxy processes on one machine are two checkers only if their
/// checks say so, e.g. `http-check send hdr User-Agent lb-a`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckerId {
    pub addr: IpAddr,
    pub agent: String,
}

impl std::fmt::Display for CheckerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.agent.is_empty() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.addr, self.agent)
        }
    }
}

/// What one checker's checks of one service looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    /// The latest checks, oldest first (at most [`KEEP_CHECKS`]).
    pub checks: VecDeque<Instant>,
    /// Answers of "down" in a row up to the latest check (0: the latest
    /// said "serving").
    pub downs: u32,
}

/// Check times kept per checker: enough to know its interval.
pub const KEEP_CHECKS: usize = 8;
/// Checkers remembered per service; the one heard from least recently
/// is forgotten first (the endpoint is reachable by anyone on its
/// network: a flood of sources cannot grow the agent's memory).
pub const MAX_CHECKERS: usize = 32;
/// A checker whose interval is not known yet (one check seen) counts as
/// checking every this often.
const UNKNOWN_INTERVAL: Duration = Duration::from_secs(10);
/// A checker is "seen recently" (and still checking) while its latest
/// check is younger than this many of its intervals.
const SILENT_INTERVALS: u32 = 3;
/// ... and never less than this,
const MIN_SILENCE: Duration = Duration::from_secs(3);
/// ... nor more: a checker heard from irregularly (a person with curl)
/// has a long median gap, and must not hold a drain until its timeout.
const MAX_SILENCE: Duration = Duration::from_secs(30);
/// After the last checker confirmed, the drain waits this much more: the
/// balancer has the answer, this covers it acting on it.
pub const CONFIRM_MARGIN: Duration = Duration::from_millis(300);

impl Checker {
    /// The checker's interval: the median gap between its latest checks.
    pub fn interval(&self) -> Option<Duration> {
        let mut gaps: Vec<Duration> = self
            .checks
            .iter()
            .zip(self.checks.iter().skip(1))
            .map(|(a, b)| b.saturating_duration_since(*a))
            .collect();
        if gaps.is_empty() {
            return None;
        }
        gaps.sort();
        Some(gaps[gaps.len() / 2])
    }

    /// Whether it has checked within a few of its intervals at `now`.
    pub fn checking(&self, now: Instant) -> bool {
        let Some(last) = self.checks.back() else {
            return false;
        };
        let window = (self.interval().unwrap_or(UNKNOWN_INTERVAL) * SILENT_INTERVALS)
            .clamp(MIN_SILENCE, MAX_SILENCE);
        now.saturating_duration_since(*last) <= window
    }
}

/// Every service's checkers, as the readiness endpoint saw them.
#[derive(Debug, Default)]
pub struct Checkers {
    by_service: Mutex<HashMap<String, BTreeMap<CheckerId, Checker>>>,
}

impl Checkers {
    /// Records that `who` checked `service` at `at` and was told `ready`.
    pub fn record(&self, service: &str, who: CheckerId, at: Instant, ready: bool) {
        let mut all = self.by_service.lock().unwrap_or_else(|p| p.into_inner());
        let map = all.entry(service.to_string()).or_default();
        if !map.contains_key(&who) && map.len() >= MAX_CHECKERS {
            let oldest = map
                .iter()
                .min_by_key(|(_, c)| c.checks.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let c = map.entry(who).or_insert_with(|| Checker {
            checks: VecDeque::new(),
            downs: 0,
        });
        if c.checks.len() >= KEEP_CHECKS {
            c.checks.pop_front();
        }
        c.checks.push_back(at);
        c.downs = if ready { 0 } else { c.downs.saturating_add(1) };
    }

    /// The checkers of `service` as they are now.
    pub fn of(&self, service: &str) -> BTreeMap<CheckerId, Checker> {
        self.by_service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets a service (removed from the host).
    pub fn forget(&self, service: &str) {
        self.by_service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service);
    }
}

/// How a drain waits for load balancers (`[drain]` of the spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRule {
    /// Wait for the balancers that check the readiness endpoint; false:
    /// wait `delay` whatever they do.
    pub balancers: bool,
    /// "Down" answers in a row each checker must have had (its `fall`).
    pub fall: u32,
    /// With no checker seen: the wait.
    pub delay: Duration,
    /// The longest wait for balancers.
    pub timeout: Duration,
}

impl WaitRule {
    pub fn of(spec: &cutover_common::service::DrainSpec) -> WaitRule {
        WaitRule {
            balancers: spec.wait_for == cutover_common::service::DrainWait::Balancers,
            fall: spec.balancer_fall,
            delay: spec.deregistration_delay,
            timeout: spec.balancer_timeout,
        }
    }
}

/// Why a drain's wait for the balancers ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every checker seen recently was told "down" `fall` times in a row
    /// (with when each did); those that stopped checking meanwhile.
    Confirmed {
        by: Vec<(CheckerId, Duration)>,
        gone: Vec<CheckerId>,
    },
    /// No checker had been seen recently: `deregistration_delay` passed.
    NoBalancer { waited: Duration },
    /// `wait_for = "delay"`: `deregistration_delay` passed.
    Delay { waited: Duration },
    /// `balancer_timeout` passed before these confirmed.
    TimedOut {
        by: Vec<(CheckerId, Duration)>,
        missing: Vec<(CheckerId, u32)>,
    },
}

impl Ended {
    /// Whether every balancer known to check the endpoint has taken the
    /// host out (or none checks it and the delay passed).
    pub fn confirmed(&self) -> bool {
        !matches!(self, Ended::TimedOut { .. })
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[(CheckerId, Duration)]| {
            v.iter()
                .map(|(c, d)| format!("{c} after {:.1}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Ended::Confirmed { by, gone } => {
                write!(f, "balancer(s) confirmed: {}", list(by))?;
                if !gone.is_empty() {
                    let g: Vec<String> = gone.iter().map(|c| c.to_string()).collect();
                    write!(f, "; stopped checking: {}", g.join(", "))?;
                }
                Ok(())
            }
            Ended::NoBalancer { waited } => write!(
                f,
                "no balancer checks this endpoint: waited deregistration_delay ({:.1}s)",
                waited.as_secs_f64()
            ),
            Ended::Delay { waited } => write!(
                f,
                "waited deregistration_delay ({:.1}s)",
                waited.as_secs_f64()
            ),
            Ended::TimedOut { by, missing } => {
                let m: Vec<String> = missing
                    .iter()
                    .map(|(c, n)| format!("{c} ({n} down answer(s))"))
                    .collect();
                write!(
                    f,
                    "balancer_timeout ran out before {} confirmed",
                    m.join(", ")
                )?;
                if !by.is_empty() {
                    write!(f, "; confirmed: {}", list(by))?;
                }
                Ok(())
            }
        }
    }
}

/// A drain's wait for load balancers: a pure state machine fed the
/// service's checkers and the time ([`Deregistration::judge`]).
///
/// The rule: every checker seen recently (within three of its intervals)
/// when the drain began, or first seen since, must have been answered
/// "down" `fall` times in a row, then [`CONFIRM_MARGIN`] more passes.
/// One that stops checking meanwhile no longer counts (a balancer
/// removed or restarted). With no checker at all, `delay` passes. After
/// `timeout` the wait ends anyway, naming who did not confirm.
#[derive(Debug, Clone)]
pub struct Deregistration {
    rule: WaitRule,
    started: Instant,
    /// Checkers that must confirm, with when they did.
    expected: BTreeMap<CheckerId, Option<Instant>>,
    gone: Vec<CheckerId>,
    any_seen: bool,
}

impl Deregistration {
    pub fn start(rule: WaitRule, now: Instant, checkers: &BTreeMap<CheckerId, Checker>) -> Self {
        let expected: BTreeMap<CheckerId, Option<Instant>> = checkers
            .iter()
            .filter(|(_, c)| c.checking(now))
            .map(|(k, _)| (k.clone(), None))
            .collect();
        Deregistration {
            any_seen: !expected.is_empty(),
            rule,
            started: now,
            expected,
            gone: Vec::new(),
        }
    }

    /// The checkers still awaited, with the down answers each has had.
    pub fn awaited(&self, checkers: &BTreeMap<CheckerId, Checker>) -> Vec<(CheckerId, u32)> {
        self.expected
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(k, _)| (k.clone(), checkers.get(k).map_or(0, |c| c.downs)))
            .collect()
    }

    /// Whether no balancer is awaited and the wait is the fixed delay.
    pub fn on_delay(&self) -> bool {
        !self.any_seen || self.expected.is_empty()
    }

    /// Whether the wait is over at `now`, and why.
    pub fn judge(
        &mut self,
        now: Instant,
        checkers: &BTreeMap<CheckerId, Checker>,
    ) -> Option<Ended> {
        let waited = now.saturating_duration_since(self.started);
        if !self.rule.balancers {
            return (waited >= self.rule.delay).then_some(Ended::Delay { waited });
        }
        // A balancer that started checking during the drain would send
        // clients here until it is told "down" too.
        for (k, c) in checkers {
            if c.checking(now) && !self.expected.contains_key(k) && !self.gone.contains(k) {
                let after_start = c.checks.back().is_some_and(|t| *t >= self.started);
                if after_start {
                    self.expected.insert(k.clone(), None);
                    self.any_seen = true;
                }
            }
        }
        let mut gone = Vec::new();
        for (k, at) in self.expected.iter_mut() {
            match checkers.get(k) {
                Some(c) if at.is_none() && c.downs >= self.rule.fall.max(1) => *at = Some(now),
                Some(c) if at.is_none() && !c.checking(now) => gone.push(k.clone()),
                None if at.is_none() => gone.push(k.clone()),
                _ => {}
            }
        }
        for k in gone {
            self.expected.remove(&k);
            self.gone.push(k);
        }
        let confirmed: Vec<(CheckerId, Duration)> = self
            .expected
            .iter()
            .filter_map(|(k, at)| {
                at.map(|t| (k.clone(), t.saturating_duration_since(self.started)))
            })
            .collect();
        if !self.any_seen || (self.expected.is_empty() && confirmed.is_empty()) {
            // Nobody checks (or everyone stopped): the fixed delay.
            return (waited >= self.rule.delay).then_some(Ended::NoBalancer { waited });
        }
        let pending = self.awaited(checkers);
        if pending.is_empty() {
            let last = self
                .expected
                .values()
                .flatten()
                .max()
                .copied()
                .unwrap_or(now);
            if now.saturating_duration_since(last) >= CONFIRM_MARGIN {
                return Some(Ended::Confirmed {
                    by: confirmed,
                    gone: self.gone.clone(),
                });
            }
            return None;
        }
        (waited >= self.rule.timeout).then_some(Ended::TimedOut {
            by: confirmed,
            missing: pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(n: u8) -> CheckerId {
        CheckerId {
            addr: IpAddr::from([198, 18, 0, n]),
            agent: String::new(),
        }
    }

    fn rule() -> WaitRule {
        WaitRule {
            balancers: true,
            fall: 3,
            delay: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A balancer checking every 2 s (HAProxy's default `inter`), told
    /// "up" before the drain and "down" after it.
    fn haproxy_checks(c: &Checkers, t0: Instant, drain_at: u64, until: u64) {
        let mut t = 0;
        while t <= until {
            c.record("web", who(1), ms(t0, t), t < drain_at);
            t += 2000;
        }
    }

    #[test]
    fn a_drain_waits_for_the_balancers_third_down_answer_not_less() {
        let c = Checkers::default();
        let t0 = Instant::now();
        // Checks at 0, 2, ..., 10 s: "up"; the drain starts at 11 s.
        haproxy_checks(&c, t0, 11_000, 10_000);
        let mut d = Deregistration::start(rule(), ms(t0, 11_000), &c.of("web"));
        assert_eq!(d.awaited(&c.of("web")), vec![(who(1), 0)]);
        // Down answers at 12 and 14 s: two of three. No connection count
        // or one-second floor ends the wait early.
        for t in [12_000, 14_000] {
            c.record("web", who(1), ms(t0, t), false);
            assert_eq!(d.judge(ms(t0, t + 900), &c.of("web")), None, "at {t}");
        }
        c.record("web", who(1), ms(t0, 16_000), false);
        // The third: confirmed, and after a short margin the wait ends.
        assert_eq!(d.judge(ms(t0, 16_000), &c.of("web")), None);
        let ended = d
            .judge(ms(t0, 16_000) + CONFIRM_MARGIN, &c.of("web"))
            .expect("confirmed");
        assert!(ended.confirmed());
        assert_eq!(
            ended,
            Ended::Confirmed {
                by: vec![(who(1), Duration::from_secs(5))],
                gone: vec![]
            }
        );
        assert!(
            ended.to_string().contains("198.18.0.1 after 5.0s"),
            "{ended}"
        );
    }

    #[test]
    fn with_no_balancer_checking_the_drain_waits_the_delay() {
        let c = Checkers::default();
        let t0 = Instant::now();
        // A check a minute ago is not "recently".
        c.record("web", who(1), t0, true);
        let start = ms(t0, 60_000);
        let mut d = Deregistration::start(rule(), start, &c.of("web"));
        assert!(d.on_delay());
        assert_eq!(d.judge(ms(t0, 64_900), &c.of("web")), None);
        assert_eq!(
            d.judge(ms(t0, 65_000), &c.of("web")),
            Some(Ended::NoBalancer {
                waited: Duration::from_secs(5)
            })
        );
    }

    #[test]
    fn every_balancer_must_confirm_and_one_that_stops_checking_no_longer_counts() {
        let c = Checkers::default();
        let t0 = Instant::now();
        for t in [0, 1000, 2000] {
            c.record("web", who(1), ms(t0, t), true);
            c.record("web", who(2), ms(t0, t), true);
        }
        let mut d = Deregistration::start(rule(), ms(t0, 2500), &c.of("web"));
        // Balancer 1 confirms; balancer 2 goes silent (removed).
        for t in [3000, 4000, 5000] {
            c.record("web", who(1), ms(t0, t), false);
        }
        assert_eq!(d.judge(ms(t0, 5000), &c.of("web")), None, "2 still awaited");
        assert_eq!(d.awaited(&c.of("web")), vec![(who(2), 0)]);
        // Silent for more than three of its 1 s intervals (and 3 s): gone.
        assert_eq!(d.judge(ms(t0, 5200), &c.of("web")), None, "the margin");
        let ended = d.judge(ms(t0, 5400), &c.of("web")).expect("ended");
        assert_eq!(
            ended,
            Ended::Confirmed {
                by: vec![(who(1), Duration::from_millis(2500))],
                gone: vec![who(2)]
            }
        );
        assert!(ended.to_string().contains("stopped checking: 198.18.0.2"));
    }

    #[test]
    fn an_irregular_checker_stops_counting_after_thirty_seconds_of_silence() {
        let c = Checkers::default();
        let t0 = Instant::now();
        // Checks minutes apart (someone with curl), the last just now.
        for t in [0, 100_000, 200_000, 300_000] {
            c.record("web", who(1), ms(t0, t), true);
        }
        let mut d = Deregistration::start(rule(), ms(t0, 300_500), &c.of("web"));
        assert_eq!(d.awaited(&c.of("web")).len(), 1);
        assert_eq!(d.judge(ms(t0, 329_000), &c.of("web")), None);
        // Silent for 30 s: no longer awaited; the fixed delay (5 s from
        // the start) has long passed.
        assert_eq!(
            d.judge(ms(t0, 330_500), &c.of("web")),
            Some(Ended::NoBalancer {
                waited: Duration::from_secs(30)
            })
        );
    }

    #[test]
    fn a_balancer_that_starts_checking_during_the_drain_must_confirm_too() {
        let c = Checkers::default();
        let t0 = Instant::now();
        let mut d = Deregistration::start(rule(), t0, &c.of("web"));
        assert!(d.on_delay());
        // A balancer started (HAProxy starts servers "up"): it checks at
        // 1 s, 2 s and is told "down".
        c.record("web", who(3), ms(t0, 1000), false);
        assert_eq!(d.judge(ms(t0, 1000), &c.of("web")), None);
        c.record("web", who(3), ms(t0, 2000), false);
        // The delay alone would have ended it at 5 s: it waits for the
        // third answer instead.
        assert_eq!(d.judge(ms(t0, 5000), &c.of("web")), None);
        c.record("web", who(3), ms(t0, 5500), false);
        assert_eq!(d.judge(ms(t0, 5500), &c.of("web")), None);
        assert!(matches!(
            d.judge(ms(t0, 6000), &c.of("web")),
            Some(Ended::Confirmed { .. })
        ));
    }

    #[test]
    fn a_balancer_too_slow_for_the_timeout_fails_the_wait_and_says_who() {
        let c = Checkers::default();
        let t0 = Instant::now();
        let slow = WaitRule {
            fall: 10,
            timeout: Duration::from_secs(8),
            ..rule()
        };
        c.record("web", who(1), t0, true);
        c.record("web", who(1), ms(t0, 2000), true);
        let mut d = Deregistration::start(slow, ms(t0, 2100), &c.of("web"));
        let mut t = 4000;
        let mut ended = None;
        while ended.is_none() {
            c.record("web", who(1), ms(t0, t), false);
            ended = d.judge(ms(t0, t), &c.of("web"));
            t += 2000;
        }
        let ended = ended.unwrap();
        assert!(!ended.confirmed());
        assert_eq!(
            ended,
            Ended::TimedOut {
                by: vec![],
                missing: vec![(who(1), 5)]
            }
        );
        assert!(ended.to_string().contains("198.18.0.1 (5 down answer(s))"));
    }

    #[test]
    fn with_wait_for_delay_the_balancers_are_not_waited_for() {
        let c = Checkers::default();
        let t0 = Instant::now();
        haproxy_checks(&c, t0, 0, 20_000);
        let mut d = Deregistration::start(
            WaitRule {
                balancers: false,
                ..rule()
            },
            t0,
            &c.of("web"),
        );
        assert_eq!(d.judge(ms(t0, 4999), &c.of("web")), None);
        assert!(matches!(
            d.judge(ms(t0, 5000), &c.of("web")),
            Some(Ended::Delay { .. })
        ));
    }

    #[test]
    fn checkers_are_told_apart_by_user_agent_and_bounded_in_number() {
        let c = Checkers::default();
        let t0 = Instant::now();
        let a = CheckerId {
            agent: "lb-a".into(),
            ..who(1)
        };
        c.record("web", a.clone(), t0, true);
        c.record("web", who(1), t0, false);
        let seen = c.of("web");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[&a].downs, 0);
        assert_eq!(seen[&who(1)].downs, 1);
        // A flood of sources keeps at most MAX_CHECKERS, the newest.
        for i in 0..200u32 {
            let id = CheckerId {
                addr: IpAddr::from([198, 19, (i / 256) as u8, (i % 256) as u8]),
                agent: String::new(),
            };
            c.record("web", id, ms(t0, 1 + i as u64), false);
        }
        let seen = c.of("web");
        assert_eq!(seen.len(), MAX_CHECKERS);
        assert!(!seen.contains_key(&a), "the least recent was forgotten");
        // Check times kept per checker are bounded, and the interval is
        // their median gap.
        for i in 0..20 {
            c.record("db", who(1), ms(t0, i * 2000), true);
        }
        let db = &c.of("db")[&who(1)];
        assert_eq!(db.checks.len(), KEEP_CHECKS);
        assert_eq!(db.interval(), Some(Duration::from_secs(2)));
    }
}
