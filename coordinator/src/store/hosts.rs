//! Hosts and join tokens as stored: enrolment with a token in one
//! transaction, host records kept in step with their sessions.

use super::db::vals;
use cutover_common::labels::Labels;
use serde::{Deserialize, Serialize};

use super::*;

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
    /// The serial of the host's current certificate: with
    /// `prev_cert_serial`, the only ones its sessions may use.
    pub cert_serial: String,
    pub cert_not_after: i64,
    /// The certificate the host renewed from, accepted until the next
    /// renewal; empty when none.
    pub prev_cert_serial: String,
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

/// Stores a new join token.
pub fn insert_token(conn: &mut dyn Db, t: &TokenRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO tokens (id, secret_hash, labels, created_at, expires_at, uses_total, uses_left, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        vals![
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

/// Whether token `id` with a secret hashing to `secret_hash` may enroll a
/// host at all (known, secret right, not expired): checked before any
/// certificate is signed. [`enroll_with_token`] checks again, atomically.
pub fn check_token(
    conn: &mut dyn Db,
    id: &str,
    secret_hash: &str,
    now: i64,
) -> Result<Result<(), TokenRefusal>, StoreError> {
    let row: Option<(String, i64)> = conn
        .row(
            "SELECT secret_hash, expires_at FROM tokens WHERE id = ?1",
            vals![id],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
        .transpose()?;
    Ok(match row {
        None => Err(TokenRefusal::Unknown),
        Some((stored, _)) if !constant_time_eq(stored.as_bytes(), secret_hash.as_bytes()) => {
            Err(TokenRefusal::Unknown)
        }
        Some((_, expires_at)) if expires_at <= now => Err(TokenRefusal::Expired { id: id.into() }),
        Some(_) => Ok(()),
    })
}

/// Admits `host` with token `id` (whose secret hashes to `secret_hash`),
/// for the key whose SHA-256 is `key_sha256`, and uses the token once;
/// or says why not. One transaction: a refusal changes nothing.
pub fn enroll_with_token(
    conn: &mut Conn,
    id: &str,
    secret_hash: &str,
    host: &HostRecord,
    key_sha256: &str,
    now: i64,
) -> Result<Result<Enrolled, TokenRefusal>, StoreError> {
    let mut tx = conn.transaction()?;
    // Locked for this transaction (PostgreSQL): two coordinators, or two
    // calls, cannot both use a token's last use.
    let lock = match tx.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let row: Option<(String, String, i64, u32)> = tx
        .row(
            &format!(
                "SELECT secret_hash, labels, expires_at, uses_left FROM tokens WHERE id = ?1{lock}"
            ),
            vals![id],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .transpose()?;
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
        .row(
            "SELECT token_id, enroll_key, state, boot_id, last_seen FROM hosts WHERE id = ?1",
            vals![host.id],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .transpose()?;
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
        tx.exec(
            "UPDATE hosts SET cert_serial = ?2, cert_not_after = ?3, prev_cert_serial = '' WHERE id = ?1",
            vals![host.id, host.cert_serial, host.cert_not_after],
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
    tx.exec(
        "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1",
        vals![id],
    )?;
    let mut host = host.clone();
    host.token_labels = labels.clone();
    insert_host(&mut tx, &host)?;
    tx.exec(
        "UPDATE hosts SET enroll_key = ?2 WHERE id = ?1",
        vals![host.id, key_sha256],
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

fn insert_host(conn: &mut dyn Db, h: &HostRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO hosts (id, token_labels, agent_labels, state, enrolled_at, token_id, last_seen,
                            agent_version, address, boot_id, facts, cert_serial, cert_not_after,
                            prev_cert_serial)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        vals![
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
            h.cert_not_after,
            h.prev_cert_serial
        ],
    )?;
    Ok(())
}

/// Moves a host's stored `last_seen` forward to `at_ms` (never back).
pub fn host_seen(conn: &mut dyn Db, host: &str, at_ms: i64) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE hosts SET last_seen = ?2 WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?2)",
        vals![host, at_ms],
    )?;
    Ok(())
}

/// Writes what the coordinator learned about a host (state, last seen,
/// Hello fields, certificate).
pub fn update_host(conn: &mut dyn Db, h: &HostRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE hosts SET agent_labels = ?2, state = ?3, last_seen = ?4, agent_version = ?5,
                address = ?6, boot_id = ?7, facts = ?8, cert_serial = ?9, cert_not_after = ?10,
                prev_cert_serial = ?11
         WHERE id = ?1",
        vals![
            h.id,
            json(&h.agent_labels),
            h.state,
            h.last_seen,
            h.agent_version,
            h.address,
            h.boot_id,
            json(&h.facts),
            h.cert_serial,
            h.cert_not_after,
            h.prev_cert_serial
        ],
    )?;
    Ok(())
}

/// Deletes a host; returns whether it existed.
pub fn delete_host(conn: &mut dyn Db, id: &str) -> Result<bool, StoreError> {
    Ok(exec(conn, "DELETE FROM hosts WHERE id = ?1", vals![id])? > 0)
}

/// Whether host `id` is enrolled.
pub fn host_exists(conn: &mut dyn Db, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .row("SELECT 1 FROM hosts WHERE id = ?1", vals![id])?
        .is_some())
}

/// Every host, ordered by id.
pub fn list_hosts(conn: &mut dyn Db) -> Result<Vec<HostRecord>, StoreError> {
    let rows = conn.rows(
        "SELECT id, token_labels, agent_labels, state, enrolled_at, token_id, last_seen, agent_version,
                address, boot_id, facts, cert_serial, cert_not_after, prev_cert_serial FROM hosts ORDER BY id",
        &[],
    )?;
    let rows = rows.iter().map(|r| {
        Ok::<_, StoreError>((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<String>(3)?,
            r.get::<i64>(4)?,
            r.get::<String>(5)?,
            r.get::<Option<i64>>(6)?,
            r.get::<String>(7)?,
            r.get::<String>(8)?,
            r.get::<String>(9)?,
            r.get::<String>(10)?,
            r.get::<String>(11)?,
            r.get::<i64>(12)?,
            r.get::<String>(13)?,
        ))
    });
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
            prev_cert_serial,
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
            prev_cert_serial,
        });
    }
    Ok(out)
}
