//! Idempotency keys of mutating control calls: a caller's `request_id`,
//! what it asked (a digest) and, once done, the answer it got, so that a
//! retry gets that answer instead of acting twice.

use super::db::vals;
use super::{Conn, Db, StoreError};

/// A request id that has not finished for this long is taken as left by a
/// coordinator that died meanwhile: a retry runs it again.
pub const STALE_REQUEST_MS: i64 = 10 * 60 * 1000;

/// What a request id means now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Not seen before: now claimed; run it and `finish_request`.
    New,
    /// Done before: this was its answer.
    Done(Vec<u8>),
    /// Being handled right now (a retry racing the first try).
    Running,
    /// Used before for another call or other arguments.
    Other { method: String },
}

/// A stored request: method, digest, answer (None while running), when.
type Seen = (String, Vec<u8>, Option<Vec<u8>>, i64);

/// Claims `request_id` of `actor` for a call to `method` with `digest`.
pub fn claim_request(
    conn: &mut Conn,
    actor: &str,
    request_id: &str,
    method: &str,
    digest: &[u8],
    now_ms: i64,
) -> Result<Claim, StoreError> {
    let mut tx = conn.transaction()?;
    let seen: Option<Seen> = tx
        .row(
            "SELECT method, digest, response, created_at FROM requests WHERE actor = ?1 AND request_id = ?2",
            vals![actor, request_id],
        )?
        .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .transpose()?;
    let claim = match seen {
        Some((m, d, _, _)) if m != method || d != digest => Claim::Other { method: m },
        Some((_, _, Some(answer), _)) => Claim::Done(answer),
        Some((_, _, None, at)) if now_ms - at < STALE_REQUEST_MS => Claim::Running,
        _ => {
            tx.exec(
                "INSERT INTO requests (actor, request_id, method, digest, response, created_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                 ON CONFLICT (actor, request_id) DO UPDATE SET method = excluded.method,
                     digest = excluded.digest, response = NULL, created_at = excluded.created_at",
                vals![actor, request_id, method, digest, now_ms],
            )?;
            Claim::New
        }
    };
    tx.commit()?;
    Ok(claim)
}

/// Records the answer to a claimed request, or (None: it failed) forgets
/// the claim so that a retry runs it again.
pub fn finish_request(
    conn: &mut dyn Db,
    actor: &str,
    request_id: &str,
    answer: Option<&[u8]>,
) -> Result<(), StoreError> {
    match answer {
        Some(a) => conn.exec(
            "UPDATE requests SET response = ?3 WHERE actor = ?1 AND request_id = ?2",
            vals![actor, request_id, a],
        )?,
        None => conn.exec(
            "DELETE FROM requests WHERE actor = ?1 AND request_id = ?2",
            vals![actor, request_id],
        )?,
    };
    Ok(())
}
