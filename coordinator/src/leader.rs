//! Leader election among coordinators sharing a PostgreSQL store.
//!
//! One row (`cutover_leader`) is the lease: who holds it, until when (the
//! database's clock, so the coordinators' clocks do not matter) and its
//! term. A coordinator takes the lease when it is free or run out, which
//! starts a new term; the holder renews it every third of its length.
//! Every store write of the leader checks the term in its own transaction
//! under a key-share lock of the lease row, which a takeover's `FOR UPDATE`
//! waits for and a renewal does not ([`crate::store::Store::fence`]), and every command it sends carries
//! the term, which agents remember: a deposed leader that has not noticed
//! yet can neither write nor be obeyed.
//!
//! The lease also names the holder's database session. A leader whose
//! session ends (its process died, or its connection to the database
//! broke) is replaced at once, without waiting for its lease to run out: a
//! standby checks the session every quarter of a second. One that is
//! stopped or cut off with its session open is replaced when the lease
//! runs out. Either way fencing, not timing, keeps the old leader out.
//!
//! A leader that cannot renew steps down when its lease runs out by its
//! own clock, measured from before the renewal it last saw succeed: it
//! exits, and its service manager starts it again as a standby
//! ([`watch_leadership`]). Standbys answer every call with where the
//! leader is ([`crate::standby`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{PgTarget, StoreError};

/// This coordinator, as the others see it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Unique per process: a restart is a new member (and takes a new term).
    pub holder: String,
    /// The operator's name for it (`name` in coordinator.toml, else the
    /// hostname).
    pub name: String,
    /// The URL agents and operators reach it at.
    pub address: String,
    pub version: String,
}

impl Member {
    pub fn new(name: &str, address: &str) -> Self {
        Self {
            holder: format!(
                "{name}/{}/{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            name: name.into(),
            address: address.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The leader as a standby sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub name: String,
    pub address: String,
    pub term: u64,
}

/// What this coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Not heard from the database yet.
    Unknown,
    /// Another holds the lease (or nobody, for a moment).
    Standby { leader: Option<LeaderInfo> },
    /// This coordinator leads `term` until `valid_until` (its own clock).
    Leader { term: u64, valid_until: Instant },
}

/// The running campaign: a thread with its own database connection,
/// renewing or trying to take the lease every `ttl / 3`.
#[derive(Debug)]
pub struct Lease {
    state: watch::Receiver<LeaseState>,
    stop: Arc<AtomicBool>,
    /// The campaign thread, woken to stop at once: its database session
    /// ends with it, and a standby takes over without waiting.
    thread: std::thread::Thread,
    pub ttl: Duration,
    pub member: Member,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl Lease {
    /// Starts campaigning.
    pub fn start(target: PgTarget, member: Member, ttl: Duration) -> std::io::Result<Lease> {
        let (tx, rx) = watch::channel(LeaseState::Unknown);
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (member.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("leader-lease".into())
            .spawn(move || campaign(target, m, ttl, tx, s))?
            .thread()
            .clone();
        Ok(Lease {
            state: rx,
            stop,
            thread,
            ttl,
            member,
        })
    }

    /// What this coordinator is now.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Changes of [`Lease::state`].
    pub fn watch(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Waits until this coordinator leads; its term.
    pub async fn leading(&self) -> u64 {
        let mut rx = self.state.clone();
        loop {
            if let LeaseState::Leader { term, .. } = &*rx.borrow_and_update() {
                return *term;
            }
            if rx.changed().await.is_err() {
                // The campaign thread ended: never.
                std::future::pending::<()>().await;
            }
        }
    }
}

fn campaign(
    target: PgTarget,
    me: Member,
    ttl: Duration,
    tx: watch::Sender<LeaseState>,
    stop: Arc<AtomicBool>,
) {
    let tick = ttl / 3;
    let mut client: Option<postgres::Client> = None;
    // A standby tries again when the leader's lease ends (by the
    // database's clock), not up to a tick after it.
    let mut next_try: Option<Duration>;
    let mut complained = false;
    // This coordinator's own row (`cutover coordinators`), once a tick
    // although a standby looks four times as often.
    let mut last_beat: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        next_try = None;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match target.connect() {
                Ok(c) => {
                    client = Some(c);
                    complained = false;
                }
                Err(e) => {
                    if !complained {
                        tracing::error!(error = %cutover_common::error_chain(&e), "the leader lease cannot reach the store");
                        complained = true;
                    }
                }
            }
        }
        if let Some(c) = client.as_mut() {
            let beat = last_beat.is_none_or(|t| t.elapsed() + SESSION_CHECK / 2 >= tick);
            if beat {
                last_beat = Some(started);
            }
            match round(c, &me, ttl, beat) {
                Ok(Some(term)) => {
                    let valid_until = started + ttl;
                    tx.send_if_modified(|s| {
                        let was = std::mem::replace(s, LeaseState::Leader { term, valid_until });
                        !matches!(was, LeaseState::Leader { term: t, .. } if t == term)
                    });
                    // The renewed deadline without waking anyone.
                    tx.send_modify(|s| {
                        if let LeaseState::Leader { valid_until: v, .. } = s {
                            *v = valid_until;
                        }
                    });
                }
                Ok(None) => {
                    let (leader, left) = read_leader(c).unwrap_or((None, None));
                    next_try = left;
                    tx.send_if_modified(|s| {
                        let new = LeaseState::Standby { leader };
                        if *s == new {
                            false
                        } else {
                            *s = new;
                            true
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %cutover_common::error_chain(&e), "renewing the leader lease failed");
                    // Kept unless the connection broke: a new one is a new
                    // session, which the standbys take for a dead leader.
                    if c.is_closed() {
                        client = None;
                    }
                }
            }
        }
        // A leader starved of time (a loaded machine) says so before its
        // lease runs out under it.
        let took = started.elapsed();
        if took > tick {
            tracing::warn!(took = ?took, lease = ?ttl, "a leader-lease round took longer than a third of the lease");
        }
        // A standby looks again when the lease ends, or sooner to see
        // whether the leader's session ended.
        let next = started
            + next_try.map_or(tick, |left| {
                left.clamp(Duration::from_millis(20), tick.min(SESSION_CHECK))
            });
        loop {
            let now = Instant::now();
            if next <= now || stop.load(Ordering::SeqCst) {
                break;
            }
            // Woken early when the lease is dropped.
            std::thread::park_timeout(next - now);
        }
    }
}

/// How often a standby checks whether the leader's database session
/// still exists.
const SESSION_CHECK: Duration = Duration::from_millis(250);

/// Sets the lease holder's session: this connection's backend.
const MY_SESSION: &str = "holder_pid = pg_backend_pid(), session_holder = $1,
    holder_session = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())";

/// The lease `l` runs: not expired, and its holder's database session
/// still exists (a holder that recorded none, or a session recorded by
/// an earlier holder, as a coordinator without this check leaves it, is
/// trusted to its expiry).
/// A session of another database role shows its pid but not its start
/// (`pg_read_all_stats` aside): then the pid alone is compared, never
/// taking a live leader for a dead one.
const LEASE_RUNS: &str = "l.expires_at > clock_timestamp()
    AND (l.holder_pid = 0 OR l.session_holder <> l.holder OR EXISTS (
        SELECT 1 FROM pg_stat_activity a
        WHERE a.pid = l.holder_pid
          AND (a.backend_start IS NULL OR l.holder_session IS NULL
               OR a.backend_start = l.holder_session)))";

/// One renewal or attempt: the term when this coordinator holds the lease
/// after it, `None` when another does.
fn round(
    c: &mut postgres::Client,
    me: &Member,
    ttl: Duration,
    beat: bool,
) -> Result<Option<u64>, StoreError> {
    let err = StoreError::Postgres;
    let ttl_ms = ttl.as_millis() as i64;
    if beat {
        c.execute(
        "INSERT INTO cutover_coordinators (holder, name, address, version, started_at, last_seen)
         VALUES ($1, $2, $3, $4, clock_timestamp(), clock_timestamp())
         ON CONFLICT (holder) DO UPDATE SET last_seen = clock_timestamp(), address = excluded.address",
            &[&me.holder, &me.name, &me.address, &me.version],
        )
        .map_err(err)?;
    }
    // Ours and running: renewed. Not held up by this leader's own writes
    // in flight, which only key-share-lock the row.
    let renewed = c
        .query_opt(
            &format!(
                "UPDATE cutover_leader
                 SET expires_at = clock_timestamp() + $2::bigint * interval '1 millisecond',
                     name = $3, address = $4, {MY_SESSION}
                 WHERE id = 1 AND holder = $1 AND expires_at > clock_timestamp()
                 RETURNING term"
            ),
            &[&me.holder, &ttl_ms, &me.name, &me.address],
        )
        .map_err(err)?;
    if let Some(r) = renewed {
        return Ok(Some(r.get::<_, i64>(0) as u64));
    }
    // Another's and running: nothing to do, and nothing locked (a
    // standby that locked the row each round would queue the leader's
    // renewals and writes behind it).
    let running = c
        .query_opt(
            &format!("SELECT {LEASE_RUNS} FROM cutover_leader l WHERE id = 1"),
            &[],
        )
        .map_err(err)?
        .is_some_and(|r| r.get::<_, bool>(0));
    if running {
        return Ok(None);
    }
    // Free, run out or its holder's session ended: taken, in a new term.
    // `FOR UPDATE` waits for the old leader's writes in flight (their
    // key-share locks): a term ends after its last write. The check is
    // made again under the lock: a leader that renewed from a new session
    // meanwhile keeps the lease.
    let mut tx = c.transaction().map_err(err)?;
    tx.execute(
        "INSERT INTO cutover_leader (id, holder, name, address, term, expires_at, since)
         VALUES (1, '', '', '', 0, '-infinity', clock_timestamp())
         ON CONFLICT (id) DO NOTHING",
        &[],
    )
    .map_err(err)?;
    // Locked first; the sessions read after the wait (a transaction
    // keeps its first view of pg_stat_activity until told to drop it).
    tx.execute("SELECT 1 FROM cutover_leader WHERE id = 1 FOR UPDATE", &[])
        .map_err(err)?;
    tx.execute("SELECT pg_stat_clear_snapshot()", &[])
        .map_err(err)?;
    let running: bool = tx
        .query_one(
            &format!("SELECT {LEASE_RUNS} FROM cutover_leader l WHERE id = 1"),
            &[],
        )
        .map_err(err)?
        .get(0);
    if running {
        tx.commit().map_err(err)?;
        return Ok(None);
    }
    let term: i64 = tx
        .query_one(
            &format!(
                "UPDATE cutover_leader
                 SET term = term + 1, holder = $1, name = $2, address = $3,
                     expires_at = clock_timestamp() + $4::bigint * interval '1 millisecond',
                     since = clock_timestamp(), {MY_SESSION}
                 WHERE id = 1
                 RETURNING term"
            ),
            &[&me.holder, &me.name, &me.address, &ttl_ms],
        )
        .map_err(err)?
        .get(0);
    tx.commit().map_err(err)?;
    Ok(Some(term as u64))
}

/// The leader while its lease runs, and how long it has left (plus a
/// few milliseconds, so that the next try finds it ended).
fn read_leader(
    c: &mut postgres::Client,
) -> Result<(Option<LeaderInfo>, Option<Duration>), StoreError> {
    let row = c
        .query_opt(
            "SELECT name, address, term,
                    (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint
             FROM cutover_leader WHERE id = 1 AND expires_at > clock_timestamp()",
            &[],
        )
        .map_err(StoreError::Postgres)?;
    Ok(match row {
        None => (None, None),
        Some(r) => (
            Some(LeaderInfo {
                name: r.get(0),
                address: r.get(1),
                term: r.get::<_, i64>(2) as u64,
            }),
            Some(Duration::from_millis(r.get::<_, i64>(3).max(0) as u64 + 10)),
        ),
    })
}

/// A coordinator sharing the store, for `cutover coordinators`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub name: String,
    pub address: String,
    pub version: String,
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    /// Heard from within three lease lengths.
    pub up: bool,
    pub leader: bool,
}

/// The coordinators seen in the last day, newest first, and the lease's
/// term and start (ms).
pub fn members(
    c: &mut dyn crate::store::Db,
    ttl: Duration,
    leader_holder: &str,
) -> Result<Vec<MemberRow>, StoreError> {
    let rows = c.rows(
        "SELECT name, address, version,
                (extract(epoch FROM started_at) * 1000)::bigint,
                (extract(epoch FROM last_seen) * 1000)::bigint,
                last_seen > clock_timestamp() - ?1::bigint * interval '1 millisecond',
                holder
         FROM cutover_coordinators
         WHERE last_seen > clock_timestamp() - interval '1 day'
         ORDER BY started_at DESC",
        crate::store::db::vals![(ttl.as_millis() as i64) * 3],
    )?;
    rows.iter()
        .map(|r| {
            Ok(MemberRow {
                name: r.get(0)?,
                address: r.get(1)?,
                version: r.get(2)?,
                started_at_ms: r.get(3)?,
                last_seen_ms: r.get(4)?,
                up: r.get(5)?,
                leader: r.get::<String>(6)? == leader_holder,
            })
        })
        .collect()
}

/// Ends the process when this coordinator stops leading `term`: its lease
/// ran out by its own clock (it could not renew: the database is gone or
/// this process was stopped), or another took it. Its service manager
/// starts it again as a standby. Checked every 100 ms.
pub async fn watch_leadership(mut state: watch::Receiver<LeaseState>, term: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = state.changed() => if r.is_err() { break },
        }
        let lost = match &*state.borrow() {
            LeaseState::Leader {
                term: t,
                valid_until,
            } => (*t != term)
                .then(|| format!("the lease was taken again as term {t}"))
                .or_else(|| {
                    (Instant::now() >= *valid_until)
                        .then(|| "the lease could not be renewed in time".to_string())
                }),
            LeaseState::Standby { leader } => Some(match leader {
                Some(l) => format!("{} ({}) leads term {}", l.name, l.address, l.term),
                None => "the lease was lost".into(),
            }),
            LeaseState::Unknown => None,
        };
        if let Some(why) = lost {
            step_down(term, &why);
        }
    }
    step_down(term, "the leader lease stopped");
}

/// Host `host` reported leader term `seen`, newer than this leader's: the
/// lease's term is moved to it (and the lease given up), and this
/// coordinator steps down; the next to take the lease starts term
/// `seen + 1`, which the fleet obeys.
pub async fn behind_the_fleet(app: &crate::app::App, host: &str, seen: u64) {
    let term = app.term();
    let r = app
        .store
        .call(move |c| {
            use crate::store::Db;
            c.exec(
                "UPDATE cutover_leader SET term = ?1, expires_at = clock_timestamp() WHERE id = 1",
                crate::store::db::vals![seen as i64],
            )
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %cutover_common::error_chain(&e), "moving the leader term past the fleet's failed");
    }
    step_down(
        term,
        &format!(
            "host {host} has seen leader term {seen}, newer than this one: the store is older than the fleet (restored from a backup?); the next leader takes term {}",
            seen + 1
        ),
    );
}

fn step_down(term: u64, why: &str) -> ! {
    tracing::error!(
        term,
        reason = why,
        "no longer the leader: stepping down (exiting; the service manager starts this coordinator again as a standby)"
    );
    let _ = cutover_common::sdnotify::notify(&format!(
        "STOPPING=1\nSTATUS=stepped down from term {term}: {why}"
    ));
    std::process::exit(EXIT_STEPPED_DOWN);
}

/// The exit status of a leader that stepped down (EX_TEMPFAIL).
pub const EXIT_STEPPED_DOWN: i32 = 75;
