//! What keeps one peer from degrading the coordinator for everyone else:
//! rate limits on calls without a certificate, a cap on such connections
//! per source, and an audit log that summarises floods of refusals instead
//! of writing a row for each.
//!
//! Pure state with the time passed in; [`Guard`] wraps it for the server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{Audit, Outcome};

/// Longest `target` kept in an audit row or a log line, in bytes.
pub const AUDIT_TARGET_MAX: usize = 128;
/// Longest `detail` kept in an audit row or a log line, in bytes.
pub const AUDIT_DETAIL_MAX: usize = 1024;

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How a bucket fills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_second).min(rate.burst);
        self.at = now;
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    /// Whether a token is there, without taking it.
    pub fn has(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// Buckets per source address, bounded: when `max_sources` are tracked,
/// full buckets (sources that have been quiet) are dropped, and if none
/// is, every further source shares one overflow bucket, so the table
/// never grows past the bound however many addresses a flood comes from.
#[derive(Debug)]
pub struct PerSource {
    rate: Rate,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
}

impl PerSource {
    pub fn new(rate: Rate, max_sources: usize, now: Instant) -> Self {
        Self {
            rate,
            max_sources,
            buckets: HashMap::new(),
            overflow: Bucket::full(rate, now),
        }
    }

    fn bucket(&mut self, ip: IpAddr, now: Instant) -> &mut Bucket {
        let rate = self.rate;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_sources {
            self.buckets.retain(|_, b| !b.is_full(rate, now));
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_sources {
            return &mut self.overflow;
        }
        self.buckets
            .entry(ip)
            .or_insert_with(|| Bucket::full(rate, now))
    }

    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        self.bucket(ip, now).take(rate, now)
    }

    /// How long until `ip` has a token again; `None` when it has one now.
    pub fn wait(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let rate = self.rate;
        let full = self.buckets.len() >= self.max_sources;
        let b = match self.buckets.get_mut(&ip) {
            Some(b) => b,
            None if full => &mut self.overflow,
            None => return None,
        };
        if b.has(rate, now) {
            return None;
        }
        let mut probe = *b;
        probe.take(rate, now).err()
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Refusals written to the audit log: the first `per_window` of each
/// (actor, action) in a window one row each, the rest counted and written
/// as one summary row per (actor, action) when the window ends.
#[derive(Debug)]
pub struct DenialLog {
    window: Duration,
    per_window: u32,
    max_keys: usize,
    started: Instant,
    keys: HashMap<(String, &'static str), Denials>,
    /// Refusals from keys beyond `max_keys`, counted together.
    others: u64,
}

#[derive(Debug, Default)]
struct Denials {
    written: u32,
    suppressed: u64,
    last_target: String,
    last_detail: String,
}

impl DenialLog {
    pub fn new(window: Duration, per_window: u32, max_keys: usize, now: Instant) -> Self {
        Self {
            window,
            per_window,
            max_keys,
            started: now,
            keys: HashMap::new(),
            others: 0,
        }
    }

    /// Whether this refusal gets a row of its own (else it is counted).
    /// Summaries of an ended window come back to be written first.
    pub fn admit(&mut self, a: &Audit, now: Instant) -> (bool, Vec<Audit>) {
        let ended = self.flush_if_due(now);
        let key = (a.actor.clone(), a.action);
        if !self.keys.contains_key(&key) && self.keys.len() >= self.max_keys {
            self.others += 1;
            return (false, ended);
        }
        let d = self.keys.entry(key).or_default();
        if d.written < self.per_window {
            d.written += 1;
            (true, ended)
        } else {
            d.suppressed += 1;
            d.last_target = a.target.clone();
            d.last_detail = a.detail.clone();
            (false, ended)
        }
    }

    /// The summary rows of the window, if it has ended (and a new one
    /// begins).
    pub fn flush_if_due(&mut self, now: Instant) -> Vec<Audit> {
        if now.saturating_duration_since(self.started) < self.window {
            return Vec::new();
        }
        self.started = now;
        let secs = self.window.as_secs();
        let mut out: Vec<Audit> = self
            .keys
            .drain()
            .filter(|(_, d)| d.suppressed > 0)
            .map(|((actor, action), d)| Audit {
                actor,
                action,
                target: d.last_target,
                outcome: Outcome::Denied,
                detail: format!(
                    "{} more refusals like this in the last {secs}s, not written one by one; the last: {}",
                    d.suppressed, d.last_detail
                ),
            })
            .collect();
        if self.others > 0 {
            out.push(Audit {
                actor: "many sources".into(),
                action: "refusals",
                target: String::new(),
                outcome: Outcome::Denied,
                detail: format!(
                    "{} refusals in the last {secs}s from more than {} actors, not written one by one",
                    self.others, self.max_keys
                ),
            });
            self.others = 0;
        }
        out.sort_by(|a, b| (&a.actor, a.action).cmp(&(&b.actor, b.action)));
        out
    }
}

/// Limits on anonymous callers (hosts enrolling, or anyone without a
/// certificate).
#[derive(Debug, Clone, Copy)]
pub struct AnonymousLimits {
    /// Enrollment calls accepted overall.
    pub enroll: Rate,
    /// Refused enrollments a source may cause before it is refused at
    /// once, without any work or audit row.
    pub refusals_per_source: Rate,
    /// Connections without a certificate open at once from one address.
    pub connections_per_source: usize,
    /// Time a connection without a certificate may stay open at all.
    pub connection_lifetime: Duration,
    /// Time it may stay open without sending anything.
    pub idle_timeout: Duration,
}

impl Default for AnonymousLimits {
    fn default() -> Self {
        Self {
            // A fleet enrolling at once (10,000 hosts, bench/fleet-scale.sh)
            // enrolls in about ten seconds at this rate; hosts turned
            // away try again (`cutover-agent enroll` treats
            // RESOURCE_EXHAUSTED as busy).
            enroll: Rate {
                burst: 2000.0,
                per_second: 1000.0,
            },
            refusals_per_source: Rate {
                burst: 10.0,
                per_second: 0.2,
            },
            connections_per_source: 16,
            connection_lifetime: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The coordinator's guards, shared by its services.
#[derive(Debug)]
pub struct Guard {
    pub anonymous: AnonymousLimits,
    enroll: Mutex<Bucket>,
    refusals: Mutex<PerSource>,
    denials: Mutex<DenialLog>,
    connections: Mutex<HashMap<IpAddr, usize>>,
}

/// Why an anonymous call was turned away before any work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error(
        "too many refused enrollments from {from}: try again in {}s",
        retry.as_secs().max(1)
    )]
    Source { from: IpAddr, retry: Duration },
    #[error(
        "too many enrollments at once across the fleet: try again in {}s",
        retry.as_secs().max(1)
    )]
    Overall { retry: Duration },
}

impl Guard {
    pub fn new(anonymous: AnonymousLimits) -> Self {
        let now = Instant::now();
        Self {
            anonymous,
            enroll: Mutex::new(Bucket::full(anonymous.enroll, now)),
            refusals: Mutex::new(PerSource::new(anonymous.refusals_per_source, 10_000, now)),
            denials: Mutex::new(DenialLog::new(Duration::from_secs(60), 5, 10_000, now)),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Admits an enrollment call from `source`, or says why not.
    pub fn enroll_call(&self, source: Option<IpAddr>) -> Result<(), Throttled> {
        let now = Instant::now();
        if let Some(ip) = source {
            let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(retry) = r.wait(ip, now) {
                return Err(Throttled::Source { from: ip, retry });
            }
        }
        let mut b = self.enroll.lock().unwrap_or_else(|p| p.into_inner());
        b.take(self.anonymous.enroll, now)
            .map_err(|retry| Throttled::Overall { retry })
    }

    /// Counts a refused enrollment against its source.
    pub fn enroll_refused(&self, source: Option<IpAddr>) {
        if let Some(ip) = source {
            let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            let _ = r.take(ip, Instant::now());
        }
    }

    /// Whether a refusal gets its own audit row; summaries due come back.
    pub fn denial(&self, a: &Audit) -> (bool, Vec<Audit>) {
        self.denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(a, Instant::now())
    }

    /// Summaries of refusals whose window has ended.
    pub fn denial_summaries(&self) -> Vec<Audit> {
        self.denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush_if_due(Instant::now())
    }

    /// A slot for a connection without a certificate from `ip`, released
    /// when dropped; `None` when that address has its share open.
    pub fn anonymous_connection(self: &std::sync::Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= self.anonymous.connections_per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            guard: self.clone(),
            ip,
        })
    }
}

/// One open connection without a certificate from an address.
#[derive(Debug)]
pub struct SourceSlot {
    guard: std::sync::Arc<Guard>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut c = self
            .guard
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// An audit line with client-supplied text cut to its bounds.
pub fn bounded(mut a: Audit) -> Audit {
    a.actor = cutover_common::truncate_for_display(&a.actor, AUDIT_TARGET_MAX);
    a.target = cutover_common::truncate_for_display(&a.target, AUDIT_TARGET_MAX);
    a.detail = cutover_common::truncate_for_display(&a.detail, AUDIT_DETAIL_MAX);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(actor: &str, detail: &str) -> Audit {
        Audit {
            actor: actor.into(),
            action: "host.enroll",
            target: "h".into(),
            outcome: Outcome::Denied,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let rate = Rate {
            burst: 3.0,
            per_second: 1.0,
        };
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert!(b.take(rate, t0).is_ok());
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.take(rate, t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(rate, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn per_source_buckets_never_grow_past_their_bound() {
        let t0 = Instant::now();
        let rate = Rate {
            burst: 1.0,
            per_second: 0.001,
        };
        let mut p = PerSource::new(rate, 100, t0);
        for i in 0..10_000u32 {
            let _ = p.take(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(p.tracked() <= 100, "{}", p.tracked());
        // A tracked source keeps its own bucket.
        let first = IpAddr::from(0u32.to_be_bytes());
        assert!(p.take(first, t0).is_err());
    }

    #[test]
    fn a_flood_of_refusals_is_written_as_a_few_rows_and_one_summary() {
        let t0 = Instant::now();
        let mut log = DenialLog::new(Duration::from_secs(60), 5, 1000, t0);
        let mut written = 0;
        for i in 0..10_000 {
            let (own, ended) = log.admit(
                &denied("anonymous@198.18.0.9", &format!("bad token {i}")),
                t0,
            );
            assert!(ended.is_empty());
            written += usize::from(own);
        }
        assert_eq!(written, 5);
        let rows = log.flush_if_due(t0 + Duration::from_secs(61));
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].detail.starts_with("9995 more refusals"),
            "{}",
            rows[0].detail
        );
        assert!(
            rows[0].detail.ends_with("bad token 9999"),
            "{}",
            rows[0].detail
        );
        // A new window writes rows again.
        assert!(
            log.admit(
                &denied("anonymous@198.18.0.9", "x"),
                t0 + Duration::from_secs(62)
            )
            .0
        );
    }

    #[test]
    fn refusals_from_too_many_actors_are_counted_together() {
        let t0 = Instant::now();
        let mut log = DenialLog::new(Duration::from_secs(60), 1, 10, t0);
        for i in 0..100 {
            let _ = log.admit(&denied(&format!("anonymous@198.18.1.{i}"), "x"), t0);
        }
        let rows = log.flush_if_due(t0 + Duration::from_secs(60));
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].detail.starts_with("90 refusals"),
            "{}",
            rows[0].detail
        );
    }

    #[test]
    fn audit_text_from_clients_is_bounded() {
        let a = bounded(denied(&"a".repeat(100_000), &"d".repeat(100_000)));
        assert!(a.actor.len() < AUDIT_TARGET_MAX + 32);
        assert!(a.detail.len() < AUDIT_DETAIL_MAX + 32);
        assert!(a.detail.ends_with("(100000 bytes)"));
    }

    #[test]
    fn connections_without_a_certificate_are_capped_per_source() {
        let g = std::sync::Arc::new(Guard::new(AnonymousLimits {
            connections_per_source: 2,
            ..Default::default()
        }));
        let ip: IpAddr = "198.18.0.7".parse().unwrap();
        let a = g.anonymous_connection(ip).unwrap();
        let _b = g.anonymous_connection(ip).unwrap();
        assert!(g.anonymous_connection(ip).is_none());
        assert!(
            g.anonymous_connection("198.18.0.8".parse().unwrap())
                .is_some()
        );
        drop(a);
        assert!(g.anonymous_connection(ip).is_some());
    }

    #[test]
    fn a_source_that_keeps_failing_is_turned_away_others_are_not() {
        let g = Guard::new(AnonymousLimits::default());
        let bad: IpAddr = "198.18.0.66".parse().unwrap();
        for _ in 0..10 {
            g.enroll_call(Some(bad)).unwrap();
            g.enroll_refused(Some(bad));
        }
        let e = g.enroll_call(Some(bad)).unwrap_err();
        assert!(matches!(e, Throttled::Source { .. }), "{e}");
        assert!(e.to_string().contains("198.18.0.66"));
        g.enroll_call(Some("198.18.0.67".parse().unwrap())).unwrap();
    }
}
