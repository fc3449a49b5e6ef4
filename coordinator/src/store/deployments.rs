//! Deployments as stored: one row each, its rollout as JSON, read back
//! by id, by service and while active.

use super::db::{Row, vals};

use super::*;

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

/// Phases in which a deployment is still running (the engine's).
pub use crate::engine::ACTIVE_PHASES;

/// The next deployment sequence number (the caller holds the store lock).
pub fn next_deployment_seq(conn: &mut dyn Db) -> Result<i64, StoreError> {
    conn.row("SELECT COALESCE(MAX(seq), 0) + 1 FROM deployments", &[])?
        .ok_or_else(|| StoreError::Corrupt("no answer for the next sequence number".into()))?
        .get(0)
}

/// Inserts a new deployment.
pub fn insert_deployment(conn: &mut dyn Db, d: &DeploymentRecord) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO deployments (seq, id, service, version, spec_toml, artifact_url, artifact_sha256, rollout, phase,
                                  created_by, created_at, finished_at, commit_time, environment, rollback_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        vals![
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
    conn: &mut dyn Db,
    id: &str,
    rollout_json: &str,
    phase: &str,
    finished_at: Option<i64>,
    live_group: Option<&str>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE deployments SET rollout = ?2, phase = ?3, finished_at = ?4, live_group = ?5 WHERE id = ?1",
        vals![id, rollout_json, phase, finished_at, live_group],
    )?;
    Ok(())
}

/// Blue/green: the group serving `service` in `environment` after its
/// newest deployment that decided one (a stored column: no rollout is
/// read).
pub fn live_group(
    conn: &mut dyn Db,
    service: &str,
    environment: &str,
) -> Result<Option<String>, StoreError> {
    conn.row(
        "SELECT live_group FROM deployments WHERE service = ?1 AND environment = ?2
         AND live_group IS NOT NULL ORDER BY seq DESC LIMIT 1",
        vals![service, environment],
    )?
    .map(|r| r.get(0))
    .transpose()
}

/// The id of the newest deployment of `service` in `environment` ("" for
/// none), whatever its phase (without reading specs and rollouts, which can
/// be a megabyte each).
pub fn newest_in(
    conn: &mut dyn Db,
    service: &str,
    environment: &str,
) -> Result<Option<String>, StoreError> {
    conn.row(
        "SELECT id FROM deployments WHERE service = ?1 AND environment = ?2 ORDER BY seq DESC LIMIT 1",
        vals![service, environment],
    )?
    .map(|r| r.get(0))
    .transpose()
}

fn deployment_row(r: &Row) -> Result<DeploymentRecord, StoreError> {
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

/// Records the caller's request id of a deployment just inserted.
pub fn set_request_id(conn: &mut dyn Db, id: &str, request_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE deployments SET request_id = ?2 WHERE id = ?1",
        vals![id, request_id],
    )?;
    Ok(())
}

/// The deployment `actor` submitted with `request_id`, if any.
pub fn by_request_id(
    conn: &mut dyn Db,
    actor: &str,
    request_id: &str,
) -> Result<Option<DeploymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE created_by = ?1 AND request_id = ?2"
    );
    conn.row(&sql, vals![actor, request_id])?
        .map(|r| deployment_row(&r))
        .transpose()
}

/// A deployment by id, or the newest when `id` is empty.
pub fn get_deployment(conn: &mut dyn Db, id: &str) -> Result<Option<DeploymentRecord>, StoreError> {
    let sql = if id.is_empty() {
        format!("SELECT {DEPLOYMENT_COLS} FROM deployments ORDER BY seq DESC LIMIT 1")
    } else {
        format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE id = ?1")
    };
    let params = if id.is_empty() { &[][..] } else { vals![id] };
    conn.row(&sql, params)?
        .map(|r| deployment_row(&r))
        .transpose()
}

/// Deployments, newest first; of one service when given.
pub fn list_deployments(
    conn: &mut dyn Db,
    service: &str,
    limit: u32,
) -> Result<Vec<DeploymentRecord>, StoreError> {
    list_deployments_before(conn, service, None, limit)
}

/// [`list_deployments`] older than sequence number `before` (a page).
pub fn list_deployments_before(
    conn: &mut dyn Db,
    service: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<DeploymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLS} FROM deployments WHERE (?1 = '' OR service = ?1) AND seq < ?3 ORDER BY seq DESC LIMIT ?2"
    );
    conn.rows(&sql, vals![service, limit, before.unwrap_or(i64::MAX)])?
        .iter()
        .map(deployment_row)
        .collect()
}

/// Deployments still running (to resume after a restart).
pub fn active_deployments(conn: &mut dyn Db) -> Result<Vec<DeploymentRecord>, StoreError> {
    // Made from ACTIVE_PHASES, so that a phase added there is resumed too
    // (a list written out here once left `stopping` out).
    let phases = ACTIVE_PHASES
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT {DEPLOYMENT_COLS} FROM deployments WHERE phase IN ({phases}) ORDER BY seq");
    conn.rows(&sql, &[])?.iter().map(deployment_row).collect()
}

/// Summaries of `service`'s deployments (every service's when empty), as
/// the DORA figures need them: without the spec and the rollout details
/// (reading those for every stored deployment made each `/metrics`
/// scrape slow as history grew). Those
/// finished since `since_ms` or not finished, and every rollback (a
/// failure's restore may have finished after it).
pub fn list_changes(
    conn: &mut dyn Db,
    service: &str,
    since_ms: i64,
) -> Result<Vec<crate::dora::Change>, StoreError> {
    let rows = conn.rows(
        "SELECT id, service, environment, phase, created_at, finished_at, commit_time, rollback_of
         FROM deployments
         WHERE (?1 = '' OR service = ?1)
           AND (finished_at IS NULL OR finished_at >= ?2 OR rollback_of IS NOT NULL)
         ORDER BY seq",
        vals![service, since_ms],
    )?;
    rows.iter()
        .map(|r| {
            Ok(crate::dora::Change {
                id: r.get(0)?,
                service: r.get(1)?,
                environment: r.get(2)?,
                phase: r.get(3)?,
                created_at: r.get(4)?,
                finished_at: r.get(5)?,
                commit_time: r.get(6)?,
                rollback_of: r.get(7)?,
            })
        })
        .collect()
}

/// What one pass of [`prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub details: usize,
    pub deployments: usize,
    pub commands: usize,
    pub audit: usize,
}

/// Applies the retention policy as of `now`: drops the rollout details of
/// finished deployments finished before `details_before` (except each
/// service's newest `keep_latest`), deletes deployments finished before
/// `deployments_before` (same exception), commands sent before
/// `commands_before` and audit lines before `audit_before`. Running
/// deployments are never touched.
pub fn prune(
    conn: &mut Conn,
    details_before: i64,
    keep_latest: u32,
    deployments_before: i64,
    commands_before: i64,
    audit_before: i64,
) -> Result<Pruned, StoreError> {
    let mut tx = conn.transaction()?;
    // The newest `keep_latest` of each service, which keep everything.
    let kept = "SELECT seq FROM (
            SELECT seq, ROW_NUMBER() OVER (PARTITION BY service ORDER BY seq DESC) AS n FROM deployments
        ) AS ranked WHERE n <= ?2";
    let details = tx.exec(
        &format!(
            "UPDATE deployments SET rollout = '' WHERE finished_at IS NOT NULL AND finished_at < ?1
             AND rollout != '' AND seq NOT IN ({kept})"
        ),
        vals![details_before, keep_latest],
    )?;
    let deployments = tx.exec(
        &format!(
            "DELETE FROM deployments WHERE finished_at IS NOT NULL AND finished_at < ?1
             AND seq NOT IN ({kept})"
        ),
        vals![deployments_before, keep_latest],
    )?;
    let commands = tx.exec(
        "DELETE FROM commands WHERE sent_at < ?1",
        vals![commands_before],
    )?;
    // Request ids are kept as long as commands.
    tx.exec(
        "DELETE FROM requests WHERE created_at < ?1",
        vals![commands_before],
    )?;
    let audit = tx.exec("DELETE FROM audit WHERE at < ?1", vals![audit_before])?;
    tx.commit()?;
    Ok(Pruned {
        details: details as usize,
        deployments: deployments as usize,
        commands: commands as usize,
        audit: audit as usize,
    })
}

/// Every (service, environment, strategy) deployed so far, for the
/// metrics' series to exist from the start (pruned rollouts are skipped:
/// each service keeps its newest).
pub fn deployed_services(conn: &mut dyn Db) -> Result<Vec<(String, String, String)>, StoreError> {
    // A pruned rollout is '' (details dropped); every other one is the
    // engine's JSON.
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            "SELECT DISTINCT service, environment, COALESCE(json_extract(rollout, '$.strategy'), '')
             FROM deployments WHERE json_valid(rollout)"
        }
        Dialect::Postgres => {
            "SELECT DISTINCT service, environment, COALESCE(rollout::jsonb ->> 'strategy', '')
             FROM deployments WHERE rollout <> ''"
        }
    };
    conn.rows(sql, &[])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect()
}
