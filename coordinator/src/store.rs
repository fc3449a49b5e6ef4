//! The coordinator's embedded store: one SQLite file under `state_dir`
//! holding hosts, join tokens, operators and the audit log, with schema
//! migrations applied at open.
//!
//! SQLite calls block, so async callers go through [`Store::call`], which
//! runs them on the blocking pool. Every write is its own transaction,
//! committed with `synchronous=FULL` before the caller acts on it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cutover_common::labels::Labels;
use rusqlite::{Connection, OptionalExtension, params};
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
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("store task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("store write failed: {0}")]
    Batch(String),
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
    ])
}

/// A stored deployment.
#[derive(Debug, Clone)]
pub struct DeploymentRecord {
    pub seq: i64,
    pub id: String,
    pub service: String,
    pub version: String,
    pub spec_toml: String,
    pub artifact_url: String,
    pub artifact_sha256: String,
    pub rollout_json: String,
    pub phase: String,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub commit_time: Option<i64>,
    /// The spec's `targets.environment` ("" when none).
    pub environment: String,
    /// An operator's rollback: the deployment it undid.
    pub rollback_of: Option<String>,
}

/// Phases in which a deployment is still running.
pub const ACTIVE_PHASES: &[&str] = &[
    "staging",
    "stopping",
    "activating",
    "waiting",
    "switching",
    "rolling_back",
];

/// The next deployment sequence number (the caller holds the store lock).
pub fn next_deployment_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments",
        [],
        |r| r.get(0),
    )?)
}

/// Inserts a new deployment.
pub fn insert_deployment(conn: &Connection, d: &DeploymentRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO deployments (seq, id, service, version, spec_toml, artifact_url, artifact_sha256, rollout, phase,
                                  created_by, created_at, finished_at, commit_time, environment, rollback_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            d.seq,
            d.id,
            d.service,
            d.version,
            d.spec_toml,
            d.artifact_url,
            d.artifact_sha256,
            d.rollout_json,
            d.phase,
            d.created_by,
            d.created_at,
            d.finished_at,
            d.commit_time,
            d.environment,
            d.rollback_of
        ],
    )?;
    Ok(())
}

/// Writes a deployment's new state.
pub fn update_deployment(
    conn: &Connection,
    id: &str,
    rollout_json: &str,
    phase: &str,
    finished_at: Option<i64>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE deployments SET rollout = ?2, phase = ?3, finished_at = ?4 WHERE id = ?1",
        params![id, rollout_json, phase, finished_at],
    )?;
    Ok(())
}

fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        service: r.get(2)?,
        version: r.get(3)?,
        spec_toml: r.get(4)?,
        artifact_url: r.get(5)?,
        artifact_sha256: r.get(6)?,
        rollout_json: r.get(7)?,
        phase: r.get(8)?,
        created_by: r.get(9)?,
        created_at: r.get(10)?,
        finished_at: r.get(11)?,
        commit_time: r.get(12)?,
        environment: r.get(13)?,
        rollback_of: r.get(14)?,
    })
}

const DEPLOYMENT_COLS: &str = "seq, id, service, version, spec_toml, artifact_url, artifact_sha256, rollout, phase, created_by, created_at, finished_at, commit_time, environment, rollback_of";

/// A deployment by id, or the newest when `id` is empty.
pub fn get_deployment(conn: &Connection, id: &str) -> Result<Option<DeploymentRecord>, StoreError> {
    let sql = if id.is_empty() {
        format!("SELECT {DEPLOYMENT_COLS} FROM deployments ORDER BY seq DESC LIMIT 1")
    } else {
        format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE id = ?1")
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = if id.is_empty() {
        stmt.query([])?
    } else {
        stmt.query(params![id])?
    };
    Ok(match rows.next()? {
        Some(r) => Some(deployment_row(r)?),
        None => None,
    })
}

/// Deployments, newest first; of one service when given.
pub fn list_deployments(
    conn: &Connection,
    service: &str,
    limit: u32,
) -> Result<Vec<DeploymentRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE (?1 = '' OR service = ?1) ORDER BY seq DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![service, limit], deployment_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deployments still running (to resume after a restart).
pub fn active_deployments(conn: &Connection) -> Result<Vec<DeploymentRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE phase IN ('staging', 'activating', 'waiting', 'switching', 'rolling_back') ORDER BY seq"
    ))?;
    let rows = stmt.query_map([], deployment_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Facts a host reports about itself in `Hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    pub arch: String,
}

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub id: String,
    /// Labels bound by the join token: they win over the agent's own.
    pub token_labels: Labels,
    /// Labels from the agent's config, as last reported in `Hello`.
    pub agent_labels: Labels,
    /// `enrolled`, `ready` or `lost` (see [`crate::fleet::HostState`]).
    pub state: String,
    pub enrolled_at: i64,
    pub token_id: String,
    pub last_seen: Option<i64>,
    pub agent_version: String,
    pub address: String,
    pub boot_id: String,
    pub facts: HostFacts,
    pub cert_serial: String,
    pub cert_not_after: i64,
}

impl HostRecord {
    /// Effective labels: the agent's, overridden by the token's.
    pub fn labels(&self) -> Labels {
        let mut l = self.agent_labels.clone();
        l.extend(self.token_labels.clone());
        l
    }
}

/// A join token as stored (the secret only as its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub secret_hash: String,
    pub labels: Labels,
    pub created_at: i64,
    pub expires_at: i64,
    pub uses_total: u32,
    pub uses_left: u32,
    pub created_by: String,
}

/// Why a token did not admit a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("join token is not known to this coordinator")]
    Unknown,
    #[error("join token {id} has expired")]
    Expired { id: String },
    #[error("join token {id} has already been used")]
    Used { id: String },
    #[error(
        "host `{host}` is already enrolled; remove it first with `cutover hosts remove {host}`"
    )]
    HostExists { host: String },
}

/// An operator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub revoked_at: Option<i64>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// A new audit line.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    batched: std::sync::mpsc::Sender<(BatchedWrite, Waiter)>,
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
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Writes queued at most in one transaction.
const MAX_BATCH: usize = 4096;

/// The group-commit writer: takes what is queued, writes it in one
/// transaction, then tells every caller. Ends when the store is dropped.
fn batch_writer(
    conn: Arc<Mutex<Connection>>,
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
    c: &mut Connection,
    writes: impl Iterator<Item = &'a BatchedWrite>,
) -> Result<(), StoreError> {
    let tx = c.transaction()?;
    for w in writes {
        match w {
            BatchedWrite::CommandResult {
                host,
                id,
                ok,
                message,
                result_json,
                finished_at,
            } => command_result(&tx, host, id, *ok, message, result_json, *finished_at)?,
            BatchedWrite::Host(h) => update_host(&tx, h)?,
            BatchedWrite::Seen { host, at_ms } => host_seen(&tx, host, *at_ms)?,
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
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.into(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
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
        let conn = Arc::new(Mutex::new(conn));
        let (batched, rx) = std::sync::mpsc::channel();
        let c = conn.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || batch_writer(c, rx))
            .map_err(|e| StoreError::Batch(format!("starting the store writer: {e}")))?;
        Ok(Self { conn, batched })
    }

    /// Writes `w` durably (committed with `synchronous=FULL`), sharing the
    /// transaction with whatever else is queued at the same moment.
    pub async fn write(&self, w: BatchedWrite) -> Result<(), StoreError> {
        self.write_all(vec![w]).await
    }

    /// Writes every one of `ws` durably, queued at once so that they share
    /// transactions; the first error, if any.
    pub async fn write_all(&self, ws: Vec<BatchedWrite>) -> Result<(), StoreError> {
        let stopped = || StoreError::Batch("the store writer has stopped".into());
        let mut waiting = Vec::with_capacity(ws.len());
        for w in ws {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.batched.send((w, tx)).map_err(|_| stopped())?;
            waiting.push(rx);
        }
        let mut result = Ok(());
        for rx in waiting {
            let r = rx.await.map_err(|_| stopped())?.map_err(StoreError::Batch);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await?
    }

    /// Runs `f` with the connection on this thread (CLI commands, setup).
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Records that a command was sent (idempotent per id).
pub fn command_sent(
    conn: &Connection,
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
         ON CONFLICT(id) DO NOTHING",
        params![id, host, deployment_id, kind, now, sent_by],
    )?;
    Ok(())
}

/// Runs one statement through the connection's statement cache: the
/// writes made per host (results, host records, commands sent) are parsed
/// once, not once per host (SQLite's parser was 4 % of the coordinator's
/// time while 10k hosts answered; BENCHMARKS.md).
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Records a command's result as reported by its host. A result for a
/// command this coordinator did not send is recorded too (sent_by `unknown`).
pub fn command_result(
    conn: &Connection,
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
        params![id, host, ok, message, result_json, finished_at],
    )?;
    Ok(())
}

/// Appends an audit line.
pub fn audit(conn: &Connection, now: i64, a: &Audit) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now,
            a.actor,
            a.action,
            a.target,
            a.outcome.as_str(),
            a.detail
        ],
    )?;
    Ok(())
}

/// The newest `limit` audit lines, newest first.
pub fn list_audit(conn: &Connection, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, action, target, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], |r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores a new join token.
pub fn insert_token(conn: &Connection, t: &TokenRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO tokens (id, secret_hash, labels, created_at, expires_at, uses_total, uses_left, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            t.id,
            t.secret_hash,
            json(&t.labels),
            t.created_at,
            t.expires_at,
            t.uses_total,
            t.uses_left,
            t.created_by
        ],
    )?;
    Ok(())
}

/// A host admitted by [`enroll_with_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The token's labels, bound to the host.
    pub labels: Labels,
    /// The same enrolment asked again: same host, token and key, and the
    /// host never opened a session since. Answered again (with the new
    /// certificate recorded) without using the token again.
    pub again: bool,
}

/// Admits `host` with token `id` (whose secret hashes to `secret_hash`),
/// for the key whose SHA-256 is `key_sha256`, and uses the token once;
/// or says why not. One transaction: a refusal changes nothing.
pub fn enroll_with_token(
    conn: &mut Connection,
    id: &str,
    secret_hash: &str,
    host: &HostRecord,
    key_sha256: &str,
    now: i64,
) -> Result<Result<Enrolled, TokenRefusal>, StoreError> {
    let tx = conn.transaction()?;
    let row: Option<(String, String, i64, u32)> = tx
        .query_row(
            "SELECT secret_hash, labels, expires_at, uses_left FROM tokens WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((stored_hash, labels, expires_at, uses_left)) = row else {
        return Ok(Err(TokenRefusal::Unknown));
    };
    if !constant_time_eq(stored_hash.as_bytes(), secret_hash.as_bytes()) {
        return Ok(Err(TokenRefusal::Unknown));
    }
    if expires_at <= now {
        return Ok(Err(TokenRefusal::Expired { id: id.into() }));
    }
    type Existing = (String, String, String, String, Option<i64>);
    let existing: Option<Existing> = tx
        .query_row(
            "SELECT token_id, enroll_key, state, boot_id, last_seen FROM hosts WHERE id = ?1",
            params![host.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    if let Some((token_id, key, state, boot_id, last_seen)) = existing {
        // The enrolling host keeps its key between attempts; a host that
        // has opened a session has its answer.
        let again = token_id == id
            && !key_sha256.is_empty()
            && constant_time_eq(key.as_bytes(), key_sha256.as_bytes())
            && state == "enrolled"
            && boot_id.is_empty()
            && last_seen.is_none();
        if !again {
            return Ok(Err(TokenRefusal::HostExists {
                host: host.id.clone(),
            }));
        }
        tx.execute(
            "UPDATE hosts SET cert_serial = ?2, cert_not_after = ?3 WHERE id = ?1",
            params![host.id, host.cert_serial, host.cert_not_after],
        )?;
        tx.commit()?;
        return Ok(Ok(Enrolled {
            labels: from_json(&labels, "token labels")?,
            again: true,
        }));
    }
    if uses_left == 0 {
        return Ok(Err(TokenRefusal::Used { id: id.into() }));
    }
    let labels: Labels = from_json(&labels, "token labels")?;
    tx.execute(
        "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1",
        params![id],
    )?;
    let mut host = host.clone();
    host.token_labels = labels.clone();
    insert_host(&tx, &host)?;
    tx.execute(
        "UPDATE hosts SET enroll_key = ?2 WHERE id = ?1",
        params![host.id, key_sha256],
    )?;
    tx.commit()?;
    Ok(Ok(Enrolled {
        labels,
        again: false,
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn insert_host(conn: &Connection, h: &HostRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO hosts (id, token_labels, agent_labels, state, enrolled_at, token_id, last_seen,
                            agent_version, address, boot_id, facts, cert_serial, cert_not_after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            h.id,
            json(&h.token_labels),
            json(&h.agent_labels),
            h.state,
            h.enrolled_at,
            h.token_id,
            h.last_seen,
            h.agent_version,
            h.address,
            h.boot_id,
            json(&h.facts),
            h.cert_serial,
            h.cert_not_after
        ],
    )?;
    Ok(())
}

/// Writes what the coordinator learned about a host (state, last seen,
/// Hello fields, certificate).
/// Moves a host's stored `last_seen` forward to `at_ms` (never back).
pub fn host_seen(conn: &Connection, host: &str, at_ms: i64) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE hosts SET last_seen = ?2 WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?2)",
        params![host, at_ms],
    )?;
    Ok(())
}

pub fn update_host(conn: &Connection, h: &HostRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE hosts SET agent_labels = ?2, state = ?3, last_seen = ?4, agent_version = ?5,
                address = ?6, boot_id = ?7, facts = ?8, cert_serial = ?9, cert_not_after = ?10
         WHERE id = ?1",
        params![
            h.id,
            json(&h.agent_labels),
            h.state,
            h.last_seen,
            h.agent_version,
            h.address,
            h.boot_id,
            json(&h.facts),
            h.cert_serial,
            h.cert_not_after
        ],
    )?;
    Ok(())
}

/// Deletes a host; returns whether it existed.
pub fn delete_host(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(exec(conn, "DELETE FROM hosts WHERE id = ?1", params![id])? > 0)
}

/// Whether host `id` is enrolled.
pub fn host_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM hosts WHERE id = ?1")?
        .query_row(params![id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every host, ordered by id.
pub fn list_hosts(conn: &Connection) -> Result<Vec<HostRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, token_labels, agent_labels, state, enrolled_at, token_id, last_seen, agent_version,
                address, boot_id, facts, cert_serial, cert_not_after FROM hosts ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, String>(8)?,
            r.get::<_, String>(9)?,
            r.get::<_, String>(10)?,
            r.get::<_, String>(11)?,
            r.get::<_, i64>(12)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            tl,
            al,
            state,
            enrolled_at,
            token_id,
            last_seen,
            agent_version,
            address,
            boot_id,
            facts,
            cert_serial,
            cert_not_after,
        ) = row?;
        out.push(HostRecord {
            token_labels: from_json(&tl, "host token labels")?,
            agent_labels: from_json(&al, "host agent labels")?,
            facts: from_json(&facts, "host facts")?,
            id,
            state,
            enrolled_at,
            token_id,
            last_seen,
            agent_version,
            address,
            boot_id,
            cert_serial,
            cert_not_after,
        });
    }
    Ok(out)
}

/// Adds or replaces an operator (a re-issued certificate replaces the row).
pub fn upsert_operator(conn: &Connection, o: &OperatorRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO operators (name, role, created_at, cert_serial, cert_not_after, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
             cert_not_after = excluded.cert_not_after, revoked_at = excluded.revoked_at",
        params![
            o.name,
            o.role,
            o.created_at,
            o.cert_serial,
            o.cert_not_after,
            o.revoked_at
        ],
    )?;
    Ok(())
}

/// An operator by name.
pub fn get_operator(conn: &Connection, name: &str) -> Result<Option<OperatorRecord>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT name, role, created_at, cert_serial, cert_not_after, revoked_at FROM operators WHERE name = ?1",
            params![name],
            |r| {
                Ok(OperatorRecord {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    cert_serial: r.get(3)?,
                    cert_not_after: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            },
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.into(),
            token_labels: Labels::new(),
            agent_labels: Labels::new(),
            state: "enrolled".into(),
            enrolled_at: 1,
            token_id: "t1".into(),
            last_seen: None,
            agent_version: String::new(),
            address: String::new(),
            boot_id: String::new(),
            facts: HostFacts::default(),
            cert_serial: "01".into(),
            cert_not_after: 10,
        }
    }

    fn token(uses: u32, expires_at: i64) -> TokenRecord {
        TokenRecord {
            id: "t1".into(),
            secret_hash: "h".into(),
            labels: cutover_common::labels::parse("role=web").unwrap(),
            created_at: 0,
            expires_at,
            uses_total: uses,
            uses_left: uses,
            created_by: "operator:admin".into(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        (dir, s)
    }

    /// A store with host `a` enrolled.
    fn store_with_host_a() -> (tempfile::TempDir, Store) {
        let (d, s) = store();
        s.with(|c| {
            insert_token(c, &token(1, 100))?;
            enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
            Ok(())
        })
        .unwrap();
        (d, s)
    }

    #[test]
    fn a_single_use_token_admits_one_host_and_binds_its_labels() {
        let (_d, s) = store();
        s.with(|c| {
            insert_token(c, &token(1, 100))?;
            let labels = enroll_with_token(c, "t1", "h", &host("a"), "k-a", 50)?
                .unwrap()
                .labels;
            assert_eq!(labels.get("role").map(String::as_str), Some("web"));
            assert_eq!(
                enroll_with_token(c, "t1", "h", &host("b"), "k-b", 50)?,
                Err(TokenRefusal::Used { id: "t1".into() })
            );
            let hosts = list_hosts(c)?;
            assert_eq!(hosts.len(), 1);
            assert_eq!(
                hosts[0].labels().get("role").map(String::as_str),
                Some("web")
            );
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn expired_unknown_and_wrong_secret_tokens_change_nothing() {
        let (_d, s) = store();
        s.with(|c| {
            insert_token(c, &token(3, 100))?;
            assert_eq!(
                enroll_with_token(c, "t1", "h", &host("a"), "k-a", 100)?,
                Err(TokenRefusal::Expired { id: "t1".into() })
            );
            assert_eq!(
                enroll_with_token(c, "nope", "h", &host("a"), "k-a", 1)?,
                Err(TokenRefusal::Unknown)
            );
            assert_eq!(
                enroll_with_token(c, "t1", "x", &host("a"), "k-a", 1)?,
                Err(TokenRefusal::Unknown)
            );
            assert!(list_hosts(c)?.is_empty());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_host_id_cannot_be_enrolled_twice() {
        let (_d, s) = store();
        s.with(|c| {
            insert_token(c, &token(3, 100))?;
            enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
            // Another key: another machine claiming the name.
            assert!(matches!(
                enroll_with_token(c, "t1", "h", &host("a"), "k-other", 1)?,
                Err(TokenRefusal::HostExists { .. })
            ));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn the_same_enrolment_asked_again_is_answered_without_using_the_token_again() {
        let (_d, s) = store();
        s.with(|c| {
            insert_token(c, &token(1, 100))?;
            assert!(!host_exists(c, "a")?);
            let first = enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
            assert!(!first.again);
            assert!(host_exists(c, "a")?);
            // Its answer was lost; the host asks again with the same key.
            let mut renewed = host("a");
            renewed.cert_serial = "02".into();
            renewed.cert_not_after = 20;
            let again = enroll_with_token(c, "t1", "h", &renewed, "k-a", 2)?.unwrap();
            assert_eq!(
                again,
                Enrolled {
                    labels: first.labels.clone(),
                    again: true
                }
            );
            let stored = list_hosts(c)?;
            assert_eq!(stored.len(), 1);
            assert_eq!(
                (stored[0].cert_serial.as_str(), stored[0].cert_not_after),
                ("02", 20)
            );
            let uses_left: u32 =
                c.query_row("SELECT uses_left FROM tokens WHERE id = 't1'", [], |r| {
                    r.get(0)
                })?;
            assert_eq!(uses_left, 0, "used once");
            // Not once the token has expired, nor with another token or
            // key, nor once the host has opened a session.
            assert_eq!(
                enroll_with_token(c, "t1", "h", &renewed, "k-a", 100)?,
                Err(TokenRefusal::Expired { id: "t1".into() })
            );
            assert!(matches!(
                enroll_with_token(c, "t1", "h", &renewed, "k-b", 3)?,
                Err(TokenRefusal::HostExists { .. })
            ));
            let mut t2 = token(1, 100);
            t2.id = "t2".into();
            insert_token(c, &t2)?;
            assert!(matches!(
                enroll_with_token(c, "t2", "h", &renewed, "k-a", 3)?,
                Err(TokenRefusal::HostExists { .. })
            ));
            c.execute("UPDATE hosts SET boot_id = 'b1' WHERE id = 'a'", [])?;
            assert!(matches!(
                enroll_with_token(c, "t1", "h", &renewed, "k-a", 3)?,
                Err(TokenRefusal::HostExists { .. })
            ));
            // Removed, it is gone; its token's use stays used.
            assert!(delete_host(c, "a")?);
            assert!(!host_exists(c, "a")?);
            assert_eq!(
                enroll_with_token(c, "t1", "h", &renewed, "k-a", 3)?,
                Err(TokenRefusal::Used { id: "t1".into() })
            );
            Ok(())
        })
        .unwrap();
    }

    fn result(id: &str) -> BatchedWrite {
        BatchedWrite::CommandResult {
            host: "a".into(),
            id: id.into(),
            ok: true,
            message: "done".into(),
            result_json: "{}".into(),
            finished_at: 5,
        }
    }

    fn stored_results(s: &Store) -> i64 {
        s.with(|c| Ok(c.query_row("SELECT COUNT(*) FROM commands", [], |r| r.get(0))?))
            .unwrap()
    }

    #[tokio::test]
    async fn writes_queued_together_share_a_commit_and_all_land() {
        let (_d, s) = store_with_host_a();
        let mut writes: Vec<BatchedWrite> = (0..2000).map(|i| result(&format!("c{i}"))).collect();
        let mut a = host("a");
        a.state = "ready".into();
        writes.push(BatchedWrite::Host(a));
        s.write_all(writes).await.unwrap();
        assert_eq!(stored_results(&s), 2000);
        let hosts = s.with(|c| list_hosts(c)).unwrap();
        assert_eq!(hosts[0].state, "ready");
    }

    #[tokio::test]
    async fn a_host_seen_moves_its_stored_last_seen_forward_only() {
        let (_d, s) = store_with_host_a();
        let seen = |at_ms| BatchedWrite::Seen {
            host: "a".into(),
            at_ms,
        };
        let stored = || s.with(|c| list_hosts(c)).unwrap()[0].last_seen;
        s.write_all(vec![seen(50)]).await.unwrap();
        assert_eq!(stored(), Some(50));
        // An older time (a session record written meanwhile) is kept.
        s.write_all(vec![seen(40)]).await.unwrap();
        assert_eq!(stored(), Some(50));
        s.write_all(vec![seen(60)]).await.unwrap();
        assert_eq!(stored(), Some(60));
    }

    #[tokio::test]
    async fn one_bad_write_fails_only_its_own_caller() {
        let (_d, s) = store();
        s.with(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON commands WHEN NEW.id = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
            )?;
            Ok(())
        })
        .unwrap();
        // Queued at once, so the three land in one batch first.
        let (x, y, z) = tokio::join!(
            s.write(result("ok-1")),
            s.write(result("bad")),
            s.write(result("ok-2"))
        );
        assert!(x.is_ok() && z.is_ok(), "{x:?} {z:?}");
        let e = y.unwrap_err().to_string();
        assert!(e.contains("refused by test"), "{e}");
        assert_eq!(stored_results(&s), 2);
    }

    #[test]
    fn the_store_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let s = Store::open(&p).unwrap();
            s.with(|c| insert_token(c, &token(1, 100))).unwrap();
        }
        let s = Store::open(&p).unwrap();
        s.with(|c| {
            enroll_with_token(c, "t1", "h", &host("a"), "k-a", 1)?.unwrap();
            Ok(())
        })
        .unwrap();
    }
}
