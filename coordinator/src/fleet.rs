//! The fleet registry: every enrolled host, its state, and its live session.
//!
//! Host state is a small pure state machine ([`HostState::step`]); the
//! registry applies events to it, keeps the live session handles, and
//! reports which transitions happened so the caller can persist and log
//! them. The store is the durable copy; this is the working copy, rebuilt
//! from the store at start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use cutover_common::labels::{Labels, Selector};
use cutover_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{HostFacts, HostRecord};

/// Where a host stands, from the coordinator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Enrolled with a token; its agent has not opened a session yet.
    Enrolled,
    /// A session is (or was, less than `host_timeout` ago) sending heartbeats.
    Ready,
    /// Nothing heard for `host_timeout`; `since` is when that was noticed.
    Lost { since_ms: i64 },
}

/// Something that happened to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvent {
    /// A session was accepted, or a message arrived on it.
    Heard,
    /// `host_timeout` passed without a message.
    Silent { now_ms: i64 },
}

impl HostState {
    /// The pure transition.
    pub fn step(self, event: HostEvent) -> HostState {
        match (self, event) {
            (HostState::Enrolled, HostEvent::Heard)
            | (HostState::Ready, HostEvent::Heard)
            | (HostState::Lost { .. }, HostEvent::Heard) => HostState::Ready,
            (HostState::Ready, HostEvent::Silent { now_ms }) => {
                HostState::Lost { since_ms: now_ms }
            }
            (HostState::Enrolled, HostEvent::Silent { .. }) => HostState::Enrolled,
            (HostState::Lost { since_ms }, HostEvent::Silent { .. }) => {
                HostState::Lost { since_ms }
            }
        }
    }

    /// The name shown to operators and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Enrolled => "enrolled",
            HostState::Ready => "ready",
            HostState::Lost { .. } => "lost",
        }
    }

    fn from_stored(s: &str, last_seen: Option<i64>) -> HostState {
        match s {
            "lost" => HostState::Lost {
                since_ms: last_seen.unwrap_or(0),
            },
            "ready" => HostState::Ready,
            _ => HostState::Enrolled,
        }
    }
}

/// Messages to one agent. Boxed: a channel preallocates a block of 32
/// slots, and at 10,000 sessions unboxed messages (about 200 bytes each)
/// cost 65 MiB of empty slots.
pub type SessionTx = mpsc::Sender<Box<pb::CoordinatorMessage>>;

/// The sending half of a live session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: String,
    pub tx: SessionTx,
    pub cancel: CancellationToken,
}

#[derive(Debug)]
struct Entry {
    record: HostRecord,
    state: HostState,
    /// Monotonic time of the last message (or of load, for restored hosts).
    last_heard: tokio::time::Instant,
    session: Option<SessionHandle>,
    /// Services as the agent last described them, with their latest health.
    services: Services,
    /// From the agent's last `Hello` (not stored: a host is a target only
    /// while its session is open).
    capabilities: Vec<String>,
}

/// A host's services by name. Boxed: a `BTreeMap` allocates a whole node
/// of 11 slots for its first entry, and a `HostService` is about 280
/// bytes, so unboxed one service cost every host about 3.4 KiB (a tenth of
/// its session's memory, bench/fleet-scale.sh); boxed it is about 0.7 KiB.
pub type Services = BTreeMap<String, Box<pb::HostService>>;

/// What a session learned from `Hello`.
#[derive(Debug, Clone)]
pub struct HelloInfo {
    /// What the agent can do beyond the baseline (common/src/compat.rs).
    pub capabilities: Vec<String>,
    /// The newest fencing epoch the agent has seen.
    pub newest_epoch: u64,
    pub agent_version: String,
    pub agent_labels: Labels,
    pub boot_id: String,
    pub facts: HostFacts,
    pub address: String,
}

/// A host as shown to operators.
#[derive(Debug, Clone)]
pub struct HostView {
    pub record: HostRecord,
    pub state: HostState,
    pub session_id: Option<String>,
    pub services: Vec<pb::HostService>,
}

/// Why a session was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRefused {
    #[error("not enrolled with this coordinator (was it removed?)")]
    NotEnrolled,
    #[error(
        "certificate serial {presented} is not this host's: its certificate is {current} (a certificate of a removed host, or one renewed away, cannot speak for it; enroll again)"
    )]
    NotItsCertificate { presented: String, current: String },
}

/// The registry. Methods return the records to persist; the caller writes
/// them to the store.
#[derive(Debug)]
pub struct Fleet {
    hosts: Mutex<HashMap<String, Entry>>,
    /// The hosts in `hosts` whose state is lost, kept in step with it
    /// (taken only under the `hosts` lock when written): a rollout asks
    /// for its lost hosts four times a second, and looking each of 10k up
    /// took 5 ms a time.
    lost: Mutex<BTreeSet<String>>,
    /// (service, host) whose latest health report says unhealthy or down,
    /// kept in step the same way, for the same reason (rollouts watch
    /// for hosts that degraded after taking a release).
    unhealthy: Mutex<BTreeSet<(String, String)>>,
    /// Woken when a host's report turns a service unhealthy or down, so
    /// that rollouts react at once instead of at their next tick.
    pub turned_unhealthy: tokio::sync::Notify,
    host_timeout: Duration,
    /// The newest fencing epoch any agent reported in `Hello`.
    newest_epoch: std::sync::atomic::AtomicU64,
}

impl Fleet {
    /// Builds the registry from stored hosts. Hosts stored as `ready` keep
    /// that state until they reconnect or `host_timeout` passes from now.
    pub fn new(records: Vec<HostRecord>, host_timeout: Duration) -> Self {
        let now = tokio::time::Instant::now();
        let hosts: HashMap<String, Entry> = records
            .into_iter()
            .map(|r| {
                let state = HostState::from_stored(&r.state, r.last_seen);
                (
                    r.id.clone(),
                    Entry {
                        record: r,
                        state,
                        last_heard: now,
                        session: None,
                        services: BTreeMap::new(),
                        capabilities: Vec::new(),
                    },
                )
            })
            .collect();
        let lost = hosts
            .iter()
            .filter(|(_, e)| matches!(e.state, HostState::Lost { .. }))
            .map(|(h, _)| h.clone())
            .collect();
        Self {
            hosts: Mutex::new(hosts),
            lost: Mutex::new(lost),
            unhealthy: Mutex::default(),
            turned_unhealthy: tokio::sync::Notify::new(),
            host_timeout,
            newest_epoch: Default::default(),
        }
    }

    /// The newest fencing epoch (deployment number) any agent has seen:
    /// deployments are numbered past it (a store restored from a backup
    /// does not know the deployments made after it).
    pub fn newest_epoch(&self) -> u64 {
        self.newest_epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lost_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unhealthy_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.unhealthy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `lost` in step with `host`'s new state (`None`: removed).
    /// Called with the `hosts` lock held.
    fn track(&self, host: &str, state: Option<HostState>) {
        let mut lost = self.lost_set();
        if matches!(state, Some(HostState::Lost { .. })) {
            if !lost.contains(host) {
                lost.insert(host.to_string());
            }
        } else {
            lost.remove(host);
        }
    }

    /// Adds a newly enrolled host.
    pub fn add(&self, record: HostRecord) {
        let now = tokio::time::Instant::now();
        let state = HostState::from_stored(&record.state, record.last_seen);
        let mut hosts = self.lock();
        self.track(&record.id, Some(state));
        hosts.insert(
            record.id.clone(),
            Entry {
                state,
                record,
                last_heard: now,
                session: None,
                services: BTreeMap::new(),
                capabilities: Vec::new(),
            },
        );
    }

    /// Forgets a host and closes its session; returns whether it existed.
    pub fn remove(&self, host: &str) -> bool {
        let mut hosts = self.lock();
        self.track(host, None);
        self.unhealthy_set().retain(|(_, h)| h != host);
        match hosts.remove(host) {
            Some(e) => {
                if let Some(s) = e.session {
                    s.cancel.cancel();
                }
                true
            }
            None => false,
        }
    }

    /// Whether the host is enrolled.
    pub fn contains(&self, host: &str) -> bool {
        self.lock().contains_key(host)
    }

    /// A session was accepted: attach it (closing any older one for the
    /// same host) and mark the host ready. Returns the effective labels,
    /// and the record to persist when the session changed more than
    /// `last_seen`: after a coordinator restart every host reconnects with
    /// the same Hello, and rewriting 10,000 unchanged rows cost a tenth of
    /// the reconnect's CPU. The stored `last_seen` catches up every
    /// [`crate::server::LAST_SEEN_STORE_EVERY`] (see [`Fleet::seen_since`]),
    /// and whenever the record is written for another reason.
    ///
    /// Only the host's own certificates may open its session: the one last
    /// issued to it, or the one it renewed from (a reconnect may resume a
    /// TLS session of the old one, or the renewal's answer may have been
    /// lost; it is replaced at the next renewal). A certificate issued to an earlier host of the same id (removed
    /// and enrolled again), or one renewed away, is refused, and the
    /// session it would have pushed off is untouched.
    pub fn session_opened(
        &self,
        host: &str,
        cert_serial: &str,
        session: SessionHandle,
        hello: HelloInfo,
        now_ms: i64,
    ) -> Result<(Option<HostRecord>, Labels), OpenRefused> {
        let mut hosts = self.lock();
        let e = hosts.get_mut(host).ok_or(OpenRefused::NotEnrolled)?;
        let r = &e.record;
        let current = !cert_serial.is_empty() && r.cert_serial == cert_serial;
        let previous = !cert_serial.is_empty() && r.prev_cert_serial == cert_serial;
        if !current && !previous {
            return Err(OpenRefused::NotItsCertificate {
                presented: cert_serial.into(),
                current: r.cert_serial.clone(),
            });
        }
        if let Some(old) = e.session.replace(session) {
            old.cancel.cancel();
        }
        let before = e.state;
        e.state = e.state.step(HostEvent::Heard);
        if before != e.state {
            self.track(host, Some(e.state));
        }
        e.last_heard = tokio::time::Instant::now();
        e.capabilities = hello.capabilities;
        self.newest_epoch
            .fetch_max(hello.newest_epoch, std::sync::atomic::Ordering::Relaxed);
        let r = &mut e.record;
        let changed = r.agent_version != hello.agent_version
            || r.agent_labels != hello.agent_labels
            || r.boot_id != hello.boot_id
            || r.facts != hello.facts
            || r.address != hello.address
            || r.state != e.state.as_str()
            || r.last_seen.is_none();
        r.agent_version = hello.agent_version;
        r.agent_labels = hello.agent_labels;
        r.boot_id = hello.boot_id;
        r.facts = hello.facts;
        r.address = hello.address;
        r.last_seen = Some(now_ms);
        r.state = e.state.as_str().into();
        Ok((changed.then(|| r.clone()), r.labels()))
    }

    /// A message arrived on session `session_id`. Returns the record to
    /// persist when this brought the host back from `lost`.
    pub fn heard(&self, host: &str, session_id: &str, now_ms: i64) -> Option<HostRecord> {
        let mut hosts = self.lock();
        let e = hosts.get_mut(host)?;
        if e.session.as_ref().map(|s| s.id.as_str()) != Some(session_id) {
            return None;
        }
        let before = e.state;
        e.state = e.state.step(HostEvent::Heard);
        e.last_heard = tokio::time::Instant::now();
        e.record.last_seen = Some(now_ms);
        (before != e.state).then(|| {
            self.track(host, Some(e.state));
            e.record.state = e.state.as_str().into();
            e.record.clone()
        })
    }

    /// Hosts heard after `since_ms`, with when they were last heard: what
    /// the stored `last_seen` should catch up with.
    pub fn seen_since(&self, since_ms: i64) -> Vec<(String, i64)> {
        self.lock()
            .iter()
            .filter_map(|(h, e)| {
                let at = e.record.last_seen?;
                (at > since_ms).then(|| (h.clone(), at))
            })
            .collect()
    }

    /// Records a renewed certificate.
    pub fn renewed(
        &self,
        host: &str,
        from_serial: &str,
        serial: String,
        not_after_ms: i64,
    ) -> Option<HostRecord> {
        let mut hosts = self.lock();
        let e = hosts.get_mut(host)?;
        e.record.prev_cert_serial = from_serial.into();
        e.record.cert_serial = serial;
        e.record.cert_not_after = not_after_ms;
        Some(e.record.clone())
    }

    /// The session ended. The host stays in its state until `host_timeout`
    /// passes without a new session. Returns the record to persist.
    pub fn session_closed(&self, host: &str, session_id: &str) -> Option<HostRecord> {
        let mut hosts = self.lock();
        let e = hosts.get_mut(host)?;
        if e.session.as_ref().map(|s| s.id.as_str()) != Some(session_id) {
            return None;
        }
        e.session = None;
        Some(e.record.clone())
    }

    /// Marks hosts silent for `host_timeout` as lost and closes their
    /// sessions. Returns the changed records.
    pub fn reap(&self, now_ms: i64) -> Vec<HostRecord> {
        let now = tokio::time::Instant::now();
        let mut changed = Vec::new();
        for (host, e) in self.lock().iter_mut() {
            if now.duration_since(e.last_heard) < self.host_timeout {
                continue;
            }
            let before = e.state;
            e.state = e.state.step(HostEvent::Silent { now_ms });
            if before != e.state {
                self.track(host, Some(e.state));
                if let Some(s) = e.session.take() {
                    s.cancel.cancel();
                }
                e.record.state = e.state.as_str().into();
                changed.push(e.record.clone());
            }
        }
        changed
    }

    /// Hosts matching `selector`, sorted by id.
    pub fn list(&self, selector: &Selector) -> Vec<HostView> {
        let mut out: Vec<HostView> = self
            .lock()
            .values()
            .filter(|e| selector.matches(&e.record.labels()))
            .map(|e| HostView {
                record: e.record.clone(),
                state: e.state,
                session_id: e.session.as_ref().map(|s| s.id.clone()),
                services: e.services.values().map(|s| (**s).clone()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        out
    }

    /// `f` of every host, read in place under the lock (nothing copied
    /// that `f` does not take), in no particular order.
    pub fn map_hosts<T>(
        &self,
        mut f: impl FnMut(&HostRecord, HostState, bool, &Services) -> T,
    ) -> Vec<T> {
        self.lock()
            .values()
            .map(|e| f(&e.record, e.state, e.session.is_some(), &e.services))
            .collect()
    }

    /// What `host`'s agent announced it can do (empty: unknown, or an agent
    /// from before capabilities existed).
    pub fn capabilities(&self, host: &str) -> Vec<String> {
        self.lock()
            .get(host)
            .map(|e| e.capabilities.clone())
            .unwrap_or_default()
    }

    /// Hosts by state (`enrolled`, `ready`, `lost`, each present), without
    /// copying any record: metrics are scraped at any fleet size.
    pub fn count_by_state(&self) -> BTreeMap<&'static str, i64> {
        let mut out: BTreeMap<&'static str, i64> = ["enrolled", "ready", "lost"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
        for e in self.lock().values() {
            *out.entry(e.state.as_str()).or_default() += 1;
        }
        out
    }

    /// The hosts marked lost for which `among` holds, sorted. Rollouts
    /// ask four times a second: this reads only the lost hosts, however
    /// large the rollout.
    pub fn lost_among(&self, among: impl Fn(&str) -> bool) -> Vec<String> {
        self.lost_set()
            .iter()
            .filter(|h| among(h))
            .cloned()
            .collect()
    }

    /// The latest health report of each host for which `among` holds and
    /// whose report for `service` says unhealthy or down, sorted by host.
    /// Reads only the unhealthy hosts.
    pub fn unhealthy_among(
        &self,
        service: &str,
        among: impl Fn(&str) -> bool,
    ) -> Vec<(String, pb::HealthReport)> {
        let map = self.lock();
        let set = self.unhealthy_set();
        let from = (service.to_string(), String::new());
        set.range(from..)
            .take_while(|(s, _)| s == service)
            .filter(|(_, h)| among(h))
            .filter_map(|(_, h)| {
                let report = map.get(h)?.services.get(service)?.health.clone()?;
                Some((h.clone(), report))
            })
            .collect()
    }

    /// Calls `f` with what each of `hosts` last said about `service`, under
    /// one lock and by key (no copy of the fleet, no scan per host).
    pub fn each_service<'a>(
        &self,
        hosts: impl IntoIterator<Item = &'a str>,
        service: &str,
        mut f: impl FnMut(&'a str, &pb::HostService),
    ) {
        let map = self.lock();
        for h in hosts {
            if let Some(s) = map.get(h).and_then(|e| e.services.get(service)) {
                f(h, s);
            }
        }
    }

    /// Replaces what the agent said about its services (from `Hello`).
    pub fn set_services(&self, host: &str, services: Vec<pb::ServiceState>) {
        if let Some(e) = self.lock().get_mut(host) {
            let old = std::mem::take(&mut e.services);
            // Services no longer reported have no health any more.
            let mut unhealthy = self.unhealthy_set();
            for gone in old
                .keys()
                .filter(|s| !services.iter().any(|n| &n.service == *s))
            {
                unhealthy.remove(&(gone.clone(), host.to_string()));
            }
            drop(unhealthy);
            for s in services {
                let health = old.get(&s.service).and_then(|o| o.health.clone());
                e.services.insert(
                    s.service.clone(),
                    Box::new(pb::HostService {
                        service: s.service,
                        active_release: s.active_release,
                        previous_release: s.previous_release,
                        drained: s.drained,
                        stopped: s.stopped,
                        staged_releases: s.staged_releases,
                        health,
                        drift: Vec::new(),
                    }),
                );
            }
        }
    }

    /// Records a health report.
    /// Keeps a health report; `false` (and nothing kept) when it is of a
    /// new service and the host already has `max_services`.
    pub fn set_health(&self, host: &str, h: pb::HealthReport, max_services: usize) -> bool {
        if let Some(e) = self.lock().get_mut(host) {
            if !e.services.contains_key(&h.service) && e.services.len() >= max_services {
                return false;
            }
            let key = (h.service.clone(), host.to_string());
            if matches!(h.status.as_str(), "unhealthy" | "down") {
                if self.unhealthy_set().insert(key) {
                    self.turned_unhealthy.notify_waiters();
                }
            } else {
                self.unhealthy_set().remove(&key);
            }
            let s = e.services.entry(h.service.clone()).or_insert_with(|| {
                Box::new(pb::HostService {
                    service: h.service.clone(),
                    ..Default::default()
                })
            });
            s.drained = h.drained;
            s.stopped = h.status == "stopped";
            if !h.release.is_empty() {
                s.active_release = h.release.clone();
            }
            s.health = Some(h);
        }
        true
    }

    /// Records what a command result says about a service.
    pub fn apply_result(&self, host: &str, r: &pb::CommandResult) {
        if r.service.is_empty() {
            return;
        }
        if let Some(e) = self.lock().get_mut(host) {
            let s = e.services.entry(r.service.clone()).or_insert_with(|| {
                Box::new(pb::HostService {
                    service: r.service.clone(),
                    ..Default::default()
                })
            });
            s.active_release = r.active_release.clone();
            s.previous_release = r.previous_release.clone();
            if !r.staged_releases.is_empty() {
                s.staged_releases = r.staged_releases.clone();
            } else {
                // An older agent: what is active or previous is on disk.
                for rel in [&r.active_release, &r.previous_release] {
                    if !rel.is_empty() && !s.staged_releases.contains(rel) {
                        s.staged_releases.push(rel.clone());
                    }
                }
            }
            // A drain's result marks the host at once, before its next
            // health report (which says when it is undrained).
            if r.drained {
                s.drained = true;
            }
        }
    }

    /// The sending half of a host's live session, with the session's id.
    pub fn session_sender(&self, host: &str) -> Option<(String, SessionTx)> {
        self.lock()
            .get(host)?
            .session
            .as_ref()
            .map(|s| (s.id.clone(), s.tx.clone()))
    }

    /// Number of live sessions.
    pub fn sessions(&self) -> usize {
        self.lock().values().filter(|e| e.session.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_ready_when_heard_lost_when_silent_and_ready_again_when_back() {
        let s = HostState::Enrolled;
        assert_eq!(s.step(HostEvent::Silent { now_ms: 5 }), HostState::Enrolled);
        let s = s.step(HostEvent::Heard);
        assert_eq!(s, HostState::Ready);
        let s = s.step(HostEvent::Silent { now_ms: 7 });
        assert_eq!(s, HostState::Lost { since_ms: 7 });
        assert_eq!(
            s.step(HostEvent::Silent { now_ms: 9 }),
            HostState::Lost { since_ms: 7 }
        );
        assert_eq!(s.step(HostEvent::Heard), HostState::Ready);
    }

    fn record(id: &str) -> HostRecord {
        HostRecord {
            id: id.into(),
            token_labels: cutover_common::labels::parse("role=web").unwrap(),
            agent_labels: Labels::new(),
            state: "enrolled".into(),
            enrolled_at: 0,
            token_id: "t".into(),
            last_seen: None,
            agent_version: String::new(),
            address: String::new(),
            boot_id: String::new(),
            facts: HostFacts::default(),
            cert_serial: "01".into(),
            cert_not_after: 0,
            prev_cert_serial: String::new(),
        }
    }

    fn session(id: &str) -> SessionHandle {
        let (tx, _rx) = mpsc::channel(1);
        SessionHandle {
            id: id.into(),
            tx,
            cancel: CancellationToken::new(),
        }
    }

    fn hello() -> HelloInfo {
        HelloInfo {
            capabilities: cutover_common::compat::current(),
            newest_epoch: 0,
            agent_version: "1".into(),
            agent_labels: cutover_common::labels::parse("role=db,zone=a").unwrap(),
            boot_id: "b".into(),
            facts: HostFacts::default(),
            address: "127.0.0.1".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_marks_silent_hosts_lost_after_host_timeout_and_closes_their_session() {
        let fleet = Fleet::new(vec![record("a")], Duration::from_secs(10));
        let s = session("s1");
        let cancel = s.cancel.clone();
        let (to_store, labels) = fleet.session_opened("a", "01", s, hello(), 1).unwrap();
        assert_eq!(
            to_store.expect("enrolled to ready is stored").state,
            "ready"
        );
        // Token labels win over the agent's own.
        assert_eq!(labels.get("role").map(String::as_str), Some("web"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("a"));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(fleet.reap(2).is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        let changed = fleet.reap(3);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].state, "lost");
        assert!(cancel.is_cancelled());
        assert_eq!(fleet.sessions(), 0);
        // What a rollout asks four times a second.
        assert_eq!(fleet.lost_among(|_| true), ["a"]);
        assert!(fleet.lost_among(|h| h != "a").is_empty());
        fleet
            .session_opened("a", "01", session("s2"), hello(), 4)
            .unwrap();
        assert!(fleet.lost_among(|_| true).is_empty(), "back: not lost");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(fleet.reap(5).len(), 1);
        assert_eq!(fleet.lost_among(|_| true), ["a"]);
        assert!(fleet.remove("a"));
        assert!(fleet.lost_among(|_| true).is_empty(), "removed: not lost");
        // A host stored as lost is lost from the start.
        let mut stored = record("b");
        stored.state = "lost".into();
        stored.last_seen = Some(1);
        let fleet = Fleet::new(vec![stored.clone(), record("c")], Duration::from_secs(10));
        assert_eq!(fleet.lost_among(|_| true), ["b"]);
        let fleet = Fleet::new(vec![], Duration::from_secs(10));
        fleet.add(stored);
        assert_eq!(fleet.lost_among(|_| true), ["b"]);
    }

    #[tokio::test]
    async fn only_the_hosts_own_certificates_open_its_session() {
        let fleet = Fleet::new(vec![record("a")], Duration::from_secs(10));
        let (first, first_cancel) = (session("s1"), CancellationToken::new());
        let first = SessionHandle {
            cancel: first_cancel.clone(),
            ..first
        };
        fleet.session_opened("a", "01", first, hello(), 1).unwrap();
        // A certificate of an earlier host of the same id: refused, and
        // the session it would have pushed off stays.
        let e = fleet
            .session_opened("a", "99", session("s2"), hello(), 2)
            .unwrap_err();
        assert!(matches!(e, OpenRefused::NotItsCertificate { .. }), "{e}");
        assert!(!first_cancel.is_cancelled());
        assert!(
            fleet
                .session_opened("a", "", session("s2"), hello(), 2)
                .is_err()
        );
        // Renewed: the new one and the one it renewed from are the host's.
        fleet.renewed("a", "01", "02".into(), 10).unwrap();
        fleet
            .session_opened("a", "02", session("s3"), hello(), 3)
            .unwrap();
        fleet
            .session_opened("a", "01", session("s4"), hello(), 4)
            .unwrap();
        // One renewal later, the first is renewed away.
        fleet.renewed("a", "02", "03".into(), 20).unwrap();
        assert!(
            fleet
                .session_opened("a", "01", session("s5"), hello(), 5)
                .is_err()
        );
        assert!(matches!(
            fleet.session_opened("b", "01", session("s6"), hello(), 6),
            Err(OpenRefused::NotEnrolled)
        ));
    }

    #[test]
    fn hosts_whose_latest_report_is_unhealthy_or_down_are_listed_per_service() {
        let fleet = Fleet::new(vec![record("a"), record("b")], Duration::from_secs(10));
        let report = |service: &str, status: &str| pb::HealthReport {
            service: service.into(),
            status: status.into(),
            release: "r2".into(),
            ..Default::default()
        };
        fleet.set_health("a", report("web", "unhealthy"), 10);
        fleet.set_health("b", report("web", "down"), 10);
        fleet.set_health("b", report("db", "unhealthy"), 10);
        // A host at its bound of services gets no new one.
        assert!(!fleet.set_health("a", report("other", "unhealthy"), 1));
        let hosts = |svc| -> Vec<String> {
            fleet
                .unhealthy_among(svc, |_| true)
                .into_iter()
                .map(|(h, _)| h)
                .collect()
        };
        assert_eq!(hosts("web"), ["a", "b"]);
        assert_eq!(hosts("db"), ["b"]);
        assert_eq!(fleet.unhealthy_among("web", |_| true)[1].1.status, "down");
        assert_eq!(fleet.unhealthy_among("web", |h| h == "b")[0].0, "b");
        fleet.set_health("a", report("web", "healthy"), 10);
        assert_eq!(hosts("web"), ["b"], "a recovered");
        assert!(fleet.remove("b"));
        assert!(
            hosts("web").is_empty() && hosts("db").is_empty(),
            "b removed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_session_replaces_an_older_one_and_the_old_close_is_ignored() {
        let fleet = Fleet::new(vec![record("a")], Duration::from_secs(10));
        let s1 = session("s1");
        let c1 = s1.cancel.clone();
        fleet.session_opened("a", "01", s1, hello(), 1).unwrap();
        fleet
            .session_opened("a", "01", session("s2"), hello(), 2)
            .unwrap();
        assert!(c1.is_cancelled());
        assert!(fleet.session_closed("a", "s1").is_none());
        let view = fleet.list(&Selector::default());
        assert_eq!(view[0].session_id.as_deref(), Some("s2"));
        // The same Hello again changes only last_seen: nothing to store.
        let (to_store, _) = fleet
            .session_opened("a", "01", session("s3"), hello(), 3)
            .unwrap();
        assert!(to_store.is_none(), "an unchanged host is not rewritten");
        // Closing the session stores the host with its latest last_seen.
        let closed = fleet.session_closed("a", "s3").unwrap();
        assert_eq!(closed.last_seen, Some(3));
        // A new agent version (or boot, address, labels, facts) is stored.
        let upgraded = HelloInfo {
            agent_version: "2".into(),
            ..hello()
        };
        let (to_store, _) = fleet
            .session_opened("a", "01", session("s4"), upgraded, 4)
            .unwrap();
        assert_eq!(
            to_store.expect("a changed host is stored").agent_version,
            "2"
        );
        // What the periodic store of last_seen picks up.
        assert_eq!(fleet.seen_since(3), [("a".to_string(), 4)]);
        assert!(fleet.seen_since(4).is_empty());
    }
}
