//! The coordinator's store: hosts, join tokens, operators, deployments,
//! commands and the audit log, with schema migrations applied at open.
//! Two backends behind one interface ([`db`]): one SQLite file under
//! `state_dir` (the default: nothing else to run) or PostgreSQL (`store =
//! "postgres://..."`: several coordinators, one leader; [`crate::leader`]).
//!
//! Store calls block, so async callers go through [`Store::call`], which
//! runs them on the blocking pool. Every write is its own transaction,
//! committed durably (SQLite `synchronous=FULL`, PostgreSQL's commit)
//! before the caller acts on it.

mod access;
pub mod db;
mod deployments;
mod hosts;
mod pg;
mod requests;
#[cfg(test)]
mod tests;

pub use access::*;
pub use db::{Conn, Db, Dialect, Tx};
pub use deployments::*;
pub use hosts::*;
pub use pg::PgTarget;
pub use requests::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use db::vals;
use rusqlite_migration::{M, Migrations};
use serde::{Deserialize, Serialize};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("migrating the store at {path}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("store query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("PostgreSQL store query failed")]
    Postgres(#[source] postgres::Error),
    #[error("PostgreSQL store at {target}: {why}")]
    PgSetup { target: String, why: String },
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("store task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("store write failed: {0}")]
    Batch(String),
    #[error("this coordinator is not the leader any more (term {term}): the write was refused")]
    Fenced { term: u64 },
}
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
        CREATE TABLE hosts (
            id TEXT PRIMARY KEY NOT NULL,
            token_labels TEXT NOT NULL,
            agent_labels TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL,
            enrolled_at INTEGER NOT NULL,
            token_id TEXT NOT NULL,
            last_seen INTEGER,
            agent_version TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            boot_id TEXT NOT NULL DEFAULT '',
            facts TEXT NOT NULL DEFAULT '{}',
            cert_serial TEXT NOT NULL,
            cert_not_after INTEGER NOT NULL
        );
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY NOT NULL,
            secret_hash TEXT NOT NULL,
            labels TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            uses_total INTEGER NOT NULL,
            uses_left INTEGER NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE operators (
            name TEXT PRIMARY KEY NOT NULL,
            role TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            cert_serial TEXT NOT NULL,
            cert_not_after INTEGER NOT NULL,
            revoked_at INTEGER
        );
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX audit_at ON audit(at);
        "#,
        ),
        M::up(
            r#"
        CREATE TABLE commands (
            id TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            deployment_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            sent_at INTEGER NOT NULL,
            sent_by TEXT NOT NULL,
            ok INTEGER,
            message TEXT,
            result TEXT,
            finished_at INTEGER
        );
        CREATE INDEX commands_host ON commands(host, sent_at);
        "#,
        ),
        M::up(
            r#"
        CREATE TABLE deployments (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT UNIQUE NOT NULL,
            service TEXT NOT NULL,
            version TEXT NOT NULL,
            spec_toml TEXT NOT NULL,
            artifact_url TEXT NOT NULL,
            artifact_sha256 TEXT NOT NULL,
            rollout TEXT NOT NULL,
            phase TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            finished_at INTEGER,
            commit_time INTEGER
        );
        CREATE INDEX deployments_service ON deployments(service, seq);
        "#,
        ),
        // Environments (promotion gate, stats) and operator rollbacks
        // (change failure rate).
        M::up(
            r#"
        ALTER TABLE deployments ADD COLUMN environment TEXT NOT NULL DEFAULT '';
        ALTER TABLE deployments ADD COLUMN rollback_of TEXT;
        "#,
        ),
        // The SHA-256 of the key a host enrolled with, so that the same
        // enrolment asked again (its answer lost on the way) is answered
        // again rather than refused.
        M::up(
            r#"
        ALTER TABLE hosts ADD COLUMN enroll_key TEXT NOT NULL DEFAULT '';
        "#,
        ),
        // The certificate a host renewed from, still accepted (the
        // renewal's answer may be lost on the way, a reconnect may resume
        // a TLS session of it): with `cert_serial`, the only certificates
        // that speak for the host.
        M::up(
            r#"
        ALTER TABLE hosts ADD COLUMN prev_cert_serial TEXT NOT NULL DEFAULT '';
        "#,
        ),
        // Every operator certificate issued, by serial: the one presented
        // must be here, of the same name, and not revoked. Revocations
        // outlive re-issuing the name.
        M::up(
            r#"
        CREATE TABLE operator_certs (
            serial TEXT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            issued_at INTEGER NOT NULL,
            not_after INTEGER NOT NULL,
            revoked_at INTEGER,
            revoked_why TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX operator_certs_name ON operator_certs(name);
        INSERT INTO operator_certs (serial, name, issued_at, not_after, revoked_at)
            SELECT cert_serial, name, created_at, cert_not_after, revoked_at FROM operators
            WHERE cert_serial != '';
        "#,
        ),
        // Idempotent submits: the caller's request id, unique per caller.
        M::up(
            r#"
        ALTER TABLE deployments ADD COLUMN request_id TEXT;
        CREATE UNIQUE INDEX deployments_request ON deployments(created_by, request_id)
            WHERE request_id IS NOT NULL;
        "#,
        ),
        // Blue/green: the group serving after a deployment, as a column
        // (was read by parsing every stored rollout).
        M::up(
            r#"
        ALTER TABLE deployments ADD COLUMN live_group TEXT;
        UPDATE deployments SET live_group = json_extract(rollout, '$.live_group_after')
            WHERE rollout != '' AND json_valid(rollout);
        CREATE INDEX deployments_live_group ON deployments(service, environment, seq)
            WHERE live_group IS NOT NULL;
        "#,
        ),
        // Idempotency keys of the other mutating control calls.
        M::up(
            r#"
        CREATE TABLE requests (
            actor TEXT NOT NULL,
            request_id TEXT NOT NULL,
            method TEXT NOT NULL,
            digest BLOB NOT NULL,
            response BLOB,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (actor, request_id)
        );
        "#,
        ),
    ])
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Conn>>,
    batched: std::sync::mpsc::Sender<(BatchedWrite, Waiter)>,
    /// Where a PostgreSQL connection is made again after it broke.
    pg: Option<Arc<PgTarget>>,
}

/// Where the store is: the embedded SQLite file or a PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(t) => write!(f, "{t}"),
        }
    }
}

/// A frequent small write that may share a transaction (and its fsync)
/// with others queued at the same moment: group commit. Thousands of agents
/// answering a rollout at once, or reconnecting after a restart, would
/// otherwise each pay a commit and a blocking thread of their own.
#[derive(Debug)]
pub enum BatchedWrite {
    /// [`command_result`].
    CommandResult {
        host: String,
        id: String,
        ok: bool,
        message: String,
        result_json: String,
        finished_at: i64,
    },
    /// [`update_host`].
    Host(HostRecord),
    /// [`host_seen`].
    Seen { host: String, at_ms: i64 },
    /// [`command_sent`].
    CommandSent {
        id: String,
        host: String,
        deployment_id: String,
        kind: String,
        sent_by: String,
        at_ms: i64,
    },
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

/// A write queued by [`Store::queue_all`].
#[derive(Debug)]
pub struct Queued(tokio::sync::oneshot::Receiver<Result<(), String>>);

impl Queued {
    /// Waits until the write is committed (or failed).
    pub async fn written(self) -> Result<(), StoreError> {
        self.0
            .await
            .map_err(|_| writer_stopped())?
            .map_err(StoreError::Batch)
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Batch("the store writer has stopped".into())
}

/// Writes queued at most in one transaction.
const MAX_BATCH: usize = 4096;

/// The group-commit writer: takes what is queued, writes it in one
/// transaction, then tells every caller. Ends when the store is dropped.
fn batch_writer(
    conn: Arc<Mutex<Conn>>,
    pg: Option<Arc<PgTarget>>,
    rx: std::sync::mpsc::Receiver<(BatchedWrite, Waiter)>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = pg::reconnect(&mut c, pg.as_deref()) {
            let why = cutover_common::error_chain(&e);
            for (_, waiter) in batch {
                let _ = waiter.send(Err(why.clone()));
            }
            continue;
        }
        if batch.len() > 1 && write_batch(&mut c, batch.iter().map(|(w, _)| w)).is_ok() {
            for (_, waiter) in batch {
                let _ = waiter.send(Ok(()));
            }
            continue;
        }
        // Alone, or the batch failed: each on its own, so that one bad
        // write fails only its own caller.
        for (w, waiter) in batch {
            let r = write_batch(&mut c, std::iter::once(&w))
                .map_err(|e| cutover_common::error_chain(&e));
            let _ = waiter.send(r);
        }
    }
}

fn write_batch<'a>(
    c: &mut Conn,
    writes: impl Iterator<Item = &'a BatchedWrite>,
) -> Result<(), StoreError> {
    let mut tx = c.transaction()?;
    for w in writes {
        match w {
            BatchedWrite::CommandResult {
                host,
                id,
                ok,
                message,
                result_json,
                finished_at,
            } => command_result(&mut tx, host, id, *ok, message, result_json, *finished_at)?,
            BatchedWrite::Host(h) => update_host(&mut tx, h)?,
            BatchedWrite::Seen { host, at_ms } => host_seen(&mut tx, host, *at_ms)?,
            BatchedWrite::CommandSent {
                id,
                host,
                deployment_id,
                kind,
                sent_by,
                at_ms,
            } => command_sent(&mut tx, id, host, deployment_id, kind, sent_by, *at_ms)?,
        }
    }
    tx.commit()?;
    Ok(())
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable")
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Store {
    /// Opens (creating if needed) and migrates the SQLite database at
    /// `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_at(&Location::Sqlite(path.into()))
    }

    /// Opens the store at `at` and brings its schema up to date.
    pub fn open_at(at: &Location) -> Result<Self, StoreError> {
        let (conn, pg) = match at {
            Location::Sqlite(path) => (Conn::Sqlite(open_sqlite(path)?), None),
            Location::Postgres(t) => (
                Conn::Postgres(db::off_runtime(|| pg::open(t))?),
                Some(Arc::new(t.clone())),
            ),
        };
        let conn = Arc::new(Mutex::new(conn));
        let (batched, rx) = std::sync::mpsc::channel();
        let (c, p) = (conn.clone(), pg.clone());
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || batch_writer(c, p, rx))
            .map_err(|e| StoreError::Batch(format!("starting the store writer: {e}")))?;
        Ok(Self { conn, batched, pg })
    }

    /// Which backend this store is.
    pub fn dialect(&self) -> Dialect {
        if self.pg.is_some() {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// From now on every transaction and write of this handle (and its
    /// clones) first checks that `term` is still the leader's term, in the
    /// same transaction: a deposed leader's writes are refused with
    /// [`StoreError::Fenced`]. PostgreSQL only (SQLite has one writer).
    pub fn fence(&self, term: u64) {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Conn::Postgres(pg) = &mut *c {
            pg.fence = Some(term);
        }
        if let Some(t) = &self.pg {
            t.fence.store(term, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Writes `w` durably (committed with `synchronous=FULL`), sharing the
    /// transaction with whatever else is queued at the same moment.
    pub async fn write(&self, w: BatchedWrite) -> Result<(), StoreError> {
        self.write_all(vec![w]).await
    }

    /// Writes every one of `ws` durably, queued at once so that they share
    /// transactions; the first error, if any.
    pub async fn write_all(&self, ws: Vec<BatchedWrite>) -> Result<(), StoreError> {
        let mut result = Ok(());
        for w in self.queue_all(ws)? {
            let r = w.written().await;
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Queues `ws` for the writer now (it commits them in as few
    /// transactions as it can); each [`Queued`] tells when its write is
    /// durable. A caller can act on the first writes while the writer
    /// commits the rest.
    pub fn queue_all(&self, ws: Vec<BatchedWrite>) -> Result<Vec<Queued>, StoreError> {
        let mut waiting = Vec::with_capacity(ws.len());
        for w in ws {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.batched.send((w, tx)).map_err(|_| writer_stopped())?;
            waiting.push(Queued(rx));
        }
        Ok(waiting)
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    {
        let this = self.clone();
        // A blocking-pool thread may block on the PostgreSQL client.
        tokio::task::spawn_blocking(move || this.with_here(f)).await?
    }

    /// Runs `f` with the connection on this thread (CLI commands, setup).
    /// A PostgreSQL connection that broke is made again first.
    pub fn with<R: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        if self.pg.is_some() {
            db::off_runtime(|| self.with_here(f))
        } else {
            self.with_here(f)
        }
    }

    fn with_here<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        pg::reconnect(&mut guard, self.pg.as_deref())?;
        f(&mut guard)
    }
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.into(),
        source,
    };
    let mut conn = rusqlite::Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    migrations()
        .to_latest(&mut conn)
        .map_err(|source| StoreError::Migrate {
            path: path.into(),
            source,
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(conn)
}

/// Records that a command was sent (idempotent per id; a result that
/// arrived first, recorded as sent by `unknown`, gets who sent it).
pub fn command_sent(
    conn: &mut dyn Db,
    id: &str,
    host: &str,
    deployment_id: &str,
    kind: &str,
    sent_by: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO commands (id, host, deployment_id, kind, sent_at, sent_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET deployment_id = excluded.deployment_id,
             kind = excluded.kind, sent_by = excluded.sent_by, sent_at = excluded.sent_at
         WHERE commands.sent_by = 'unknown' AND commands.host = excluded.host",
        vals![id, host, deployment_id, kind, now, sent_by],
    )?;
    Ok(())
}

/// A command as `cutover hosts show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    pub id: String,
    pub kind: String,
    pub deployment_id: String,
    pub sent_by: String,
    pub sent_at: i64,
    /// None while no result came.
    pub ok: Option<bool>,
    pub message: String,
    pub finished_at: Option<i64>,
}

/// `host`'s newest `limit` commands, newest first.
pub fn recent_commands(
    conn: &mut dyn Db,
    host: &str,
    limit: u32,
) -> Result<Vec<CommandRow>, StoreError> {
    let rows = conn.rows(
        "SELECT id, kind, deployment_id, sent_by, sent_at, ok, COALESCE(message, ''), finished_at
         FROM commands WHERE host = ?1 ORDER BY sent_at DESC, id DESC LIMIT ?2",
        vals![host, limit as i64],
    )?;
    rows.iter()
        .map(|r| {
            Ok(CommandRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                deployment_id: r.get(2)?,
                sent_by: r.get(3)?,
                sent_at: r.get(4)?,
                ok: r.get::<Option<i64>>(5)?.map(|v| v != 0),
                message: r.get(6)?,
                finished_at: r.get(7)?,
            })
        })
        .collect()
}

/// Runs one statement (through the connection's statement cache); the
/// number of rows it changed.
fn exec(conn: &mut dyn Db, sql: &str, params: &[db::Value]) -> Result<usize, StoreError> {
    Ok(conn.exec(sql, params)? as usize)
}

/// Records a command's result as reported by its host. A result for a
/// command this coordinator did not send is recorded too (sent_by `unknown`).
pub fn command_result(
    conn: &mut dyn Db,
    host: &str,
    id: &str,
    ok: bool,
    message: &str,
    result_json: &str,
    finished_at: i64,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO commands (id, host, deployment_id, kind, sent_at, sent_by, ok, message, result, finished_at)
         VALUES (?1, ?2, '', '', ?6, 'unknown', ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET ok = excluded.ok, message = excluded.message,
             result = excluded.result, finished_at = excluded.finished_at
         WHERE commands.host = excluded.host",
        vals![id, host, ok, message, result_json, finished_at],
    )?;
    Ok(())
}
