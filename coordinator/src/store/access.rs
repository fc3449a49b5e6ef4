//! Operators and the audit log as stored.

use super::db::vals;
use serde::Serialize;

use super::*;

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

/// Appends an audit line.
pub fn audit(conn: &mut dyn Db, now: i64, a: &Audit) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO audit (at, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        vals![
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
pub fn list_audit(conn: &mut dyn Db, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
    list_audit_before(conn, None, limit)
}

/// [`list_audit`] older than line `before` (a page).
pub fn list_audit_before(
    conn: &mut dyn Db,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    conn.rows(
        "SELECT id, at, actor, action, target, outcome, detail FROM audit WHERE id < ?2 ORDER BY id DESC LIMIT ?1",
        vals![limit, before.unwrap_or(i64::MAX)],
    )?
    .iter()
    .map(|r| {
        Ok(AuditRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    })
    .collect()
}

/// Adds or replaces an operator (a re-issued certificate replaces the row).
pub fn upsert_operator(conn: &mut dyn Db, o: &OperatorRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO operators (name, role, created_at, cert_serial, cert_not_after, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
             cert_not_after = excluded.cert_not_after, revoked_at = excluded.revoked_at",
        vals![
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

/// Records a newly issued operator certificate. Earlier certificates of
/// the same name that are still valid are revoked as superseded: a name
/// has one certificate at a time, and re-issuing never brings an old one
/// back.
pub fn operator_cert_issued(
    conn: &mut dyn Db,
    serial: &str,
    name: &str,
    now: i64,
    not_after: i64,
) -> Result<usize, StoreError> {
    let superseded = exec(
        conn,
        "UPDATE operator_certs SET revoked_at = ?2, revoked_why = 'superseded by a newer certificate'
         WHERE name = ?1 AND revoked_at IS NULL",
        vals![name, now],
    )?;
    exec(
        conn,
        "INSERT INTO operator_certs (serial, name, issued_at, not_after) VALUES (?1, ?2, ?3, ?4)",
        vals![serial, name, now, not_after],
    )?;
    Ok(superseded)
}

/// What the store says of an operator certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorCert {
    /// Never issued by this coordinator's store (or for another name).
    Unknown,
    Revoked {
        at: i64,
        why: String,
    },
    Valid,
}

/// Whether the certificate `serial` speaks for operator `name`.
pub fn operator_cert(
    conn: &mut dyn Db,
    name: &str,
    serial: &str,
) -> Result<OperatorCert, StoreError> {
    let row: Option<(String, Option<i64>, String)> = conn
        .row(
            "SELECT name, revoked_at, revoked_why FROM operator_certs WHERE serial = ?1",
            vals![serial],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?)))
        .transpose()?;
    Ok(match row {
        Some((n, _, _)) if n != name => OperatorCert::Unknown,
        None => OperatorCert::Unknown,
        Some((_, Some(at), why)) => OperatorCert::Revoked { at, why },
        Some((_, None, _)) => OperatorCert::Valid,
    })
}

/// Revokes every certificate of operator `name` and the operator itself;
/// returns how many certificates were still valid, or `None` if no such
/// operator.
pub fn revoke_operator(conn: &mut Conn, name: &str, now: i64) -> Result<Option<usize>, StoreError> {
    let mut tx = conn.transaction()?;
    let known = exec(
        &mut tx,
        "UPDATE operators SET revoked_at = ?2 WHERE name = ?1",
        vals![name, now],
    )? > 0;
    if !known {
        return Ok(None);
    }
    let n = exec(
        &mut tx,
        "UPDATE operator_certs SET revoked_at = ?2, revoked_why = 'operator revoked'
         WHERE name = ?1 AND revoked_at IS NULL",
        vals![name, now],
    )?;
    tx.commit()?;
    Ok(Some(n))
}

/// Revokes one operator certificate by serial; returns its operator, or
/// `None` if no certificate has that serial.
pub fn revoke_operator_cert(
    conn: &mut dyn Db,
    serial: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let name: Option<String> = conn
        .row(
            "SELECT name FROM operator_certs WHERE serial = ?1",
            vals![serial],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    if name.is_some() {
        exec(
            conn,
            "UPDATE operator_certs SET revoked_at = ?2, revoked_why = 'revoked by serial'
             WHERE serial = ?1 AND revoked_at IS NULL",
            vals![serial, now],
        )?;
    }
    Ok(name)
}

/// An operator by name.
pub fn get_operator(conn: &mut dyn Db, name: &str) -> Result<Option<OperatorRecord>, StoreError> {
    conn.row(
        "SELECT name, role, created_at, cert_serial, cert_not_after, revoked_at FROM operators WHERE name = ?1",
        vals![name],
    )?
    .map(|r| {
        Ok(OperatorRecord {
            name: r.get(0)?,
            role: r.get(1)?,
            created_at: r.get(2)?,
            cert_serial: r.get(3)?,
            cert_not_after: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    })
    .transpose()
}
