//! Delivery performance (the DORA measures) from stored deployment history:
//! how often changes reach the fleet, how long from commit to running, how
//! many changes fail, and how long the service takes to recover when one
//! does. Pure: [`compute`] takes the history and the window.
//!
//! Definitions (documented in docs/operator-guide.md):
//! - A *change* is a finished deployment that is not an operator's
//!   rollback (`cutover rollback` redeploying an older version).
//! - *Deployment frequency*: succeeded changes per day in the window.
//! - *Lead time*: commit time (`cutover deploy --commit-time`) to the
//!   change finishing, over succeeded changes that carry a commit time.
//! - *Change failure rate*: failed changes over all changes. A change
//!   failed when it ended rolled back, aborted or failed, or when it
//!   succeeded and an operator rolled it back later.
//! - *Time to restore*: for a change that rolled back or was aborted, from
//!   its start until it finished (the old release serving again); for one
//!   an operator rolled back, from its end until that rollback finished;
//!   for one that failed without a rollback, from its start until the next
//!   succeeded deployment of the service finished.

use serde::Serialize;

/// One deployment as the measures see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub phase: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub commit_time: Option<i64>,
    /// Set on an operator's rollback: the deployment it undid.
    pub rollback_of: Option<String>,
}

/// A distribution summary, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median_ms: i64,
    pub p90_ms: i64,
}

fn summary(mut v: Vec<i64>) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Summary {
        n: v.len(),
        median_ms: at(0.5),
        p90_ms: at(0.9),
    })
}

/// The measures over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dora {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Finished changes in the window.
    pub changes: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub deployments_per_day: f64,
    pub lead_time: Option<Summary>,
    /// `failed / changes`; none without changes.
    pub change_failure_rate: Option<f64>,
    pub time_to_restore: Option<Summary>,
    /// Failed changes the service has not recovered from yet.
    pub unrestored: usize,
    /// The failed changes, for the curious.
    pub failed_ids: Vec<String>,
}

fn ended_badly(phase: &str) -> bool {
    crate::engine::is_terminal_name(phase) && phase != "succeeded"
}

/// The DORA measures over the stored history of `service` (or all) in
/// `environment` (or all), for changes finished since `since_ms`: a
/// summary query (no rollout is read).
pub async fn measure(
    app: &crate::app::App,
    service: String,
    environment: String,
    since_ms: i64,
) -> Result<Dora, crate::store::StoreError> {
    // Changes finished before the window matter only as rollbacks' targets;
    // a day's margin keeps a restore that spans the window's start.
    let from = since_ms.saturating_sub(24 * 3600 * 1000);
    let rows = app
        .store
        .call(move |c| crate::store::list_changes(c, &service, from))
        .await?;
    let changes: Vec<Change> = rows
        .into_iter()
        .filter(|d| environment.is_empty() || d.environment == environment)
        .collect();
    Ok(compute(&changes, since_ms, cutover_common::time::now_ms()))
}

/// Computes the measures for changes finished in `[since_ms, until_ms]`.
/// `all` is the whole history (rollbacks and recoveries may fall outside
/// the window).
pub fn compute(all: &[Change], since_ms: i64, until_ms: i64) -> Dora {
    let mut in_window: Vec<&Change> = all
        .iter()
        .filter(|c| c.rollback_of.is_none())
        .filter(|c| {
            c.finished_at
                .is_some_and(|f| f >= since_ms && f <= until_ms)
        })
        .collect();
    in_window.sort_by_key(|c| (c.created_at, c.id.clone()));
    let rollback_of = |id: &str| -> Option<&Change> {
        all.iter()
            .filter(|r| r.rollback_of.as_deref() == Some(id) && r.phase == "succeeded")
            .min_by_key(|r| r.created_at)
    };
    let mut succeeded = 0;
    let mut lead = Vec::new();
    let mut restore = Vec::new();
    let mut failed_ids = Vec::new();
    let mut unrestored = 0;
    for c in &in_window {
        let end = c.finished_at.expect("filtered");
        let undone = if c.phase == "succeeded" {
            rollback_of(&c.id)
        } else {
            None
        };
        if c.phase == "succeeded" {
            succeeded += 1;
            if let Some(t) = c.commit_time {
                lead.push((end - t).max(0));
            }
        }
        if let Some(r) = undone {
            failed_ids.push(c.id.clone());
            match r.finished_at {
                Some(f) => restore.push((f - end).max(0)),
                None => unrestored += 1,
            }
        } else if ended_badly(&c.phase) {
            failed_ids.push(c.id.clone());
            if c.phase == "failed" {
                // Nothing was undone: restored by the next good deployment.
                let next = all
                    .iter()
                    .filter(|n| {
                        n.service == c.service
                            && n.environment == c.environment
                            && n.phase == "succeeded"
                            && n.created_at > c.created_at
                    })
                    .filter_map(|n| n.finished_at)
                    .min();
                match next {
                    Some(f) => restore.push((f - c.created_at).max(0)),
                    None => unrestored += 1,
                }
            } else {
                restore.push((end - c.created_at).max(0));
            }
        }
    }
    let days = ((until_ms - since_ms) as f64 / 86_400_000.0).max(1.0 / 24.0);
    let changes = in_window.len();
    Dora {
        since_ms,
        until_ms,
        changes,
        succeeded,
        failed: failed_ids.len(),
        deployments_per_day: succeeded as f64 / days,
        lead_time: summary(lead),
        change_failure_rate: (changes > 0).then(|| failed_ids.len() as f64 / changes as f64),
        time_to_restore: summary(restore),
        unrestored,
        failed_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    fn change(id: &str, phase: &str, created: i64, finished: i64) -> Change {
        Change {
            id: id.into(),
            service: "web".into(),
            environment: "production".into(),
            phase: phase.into(),
            created_at: created,
            finished_at: Some(finished),
            commit_time: None,
            rollback_of: None,
        }
    }

    /// Ten days of history with answers worked out by hand.
    fn history() -> Vec<Change> {
        let mut v = Vec::new();
        // d1..d6 succeed, one a day, 10 minutes each; commits 2 h, 4 h,
        // 6 h, 8 h, 10 h before the end (d6 has no commit time).
        for i in 1..=6 {
            let start = i * DAY;
            let mut c = change(&format!("d{i}"), "succeeded", start, start + 10 * 60_000);
            if i <= 5 {
                c.commit_time = Some(start + 10 * 60_000 - 2 * i * H);
            }
            v.push(c);
        }
        // d7 rolled back by itself after 3 minutes.
        v.push(change("d7", "rolled_back", 7 * DAY, 7 * DAY + 3 * 60_000));
        // d8 succeeded, but an operator rolled it back (d9) an hour later;
        // d9 took 2 minutes.
        v.push(change("d8", "succeeded", 8 * DAY, 8 * DAY + 60_000));
        let mut rb = change("d9", "succeeded", 8 * DAY + H, 8 * DAY + H + 2 * 60_000);
        rb.rollback_of = Some("d8".into());
        v.push(rb);
        // d10 failed without a rollback; d11 (a fix) succeeded 30 minutes
        // after d10 started.
        v.push(change("d10", "failed", 9 * DAY, 9 * DAY + 60_000));
        v.push(change(
            "d11",
            "succeeded",
            9 * DAY + 20 * 60_000,
            9 * DAY + 30 * 60_000,
        ));
        v
    }

    #[test]
    fn the_measures_of_a_known_history_are_the_known_answers() {
        let d = compute(&history(), 0, 10 * DAY);
        // Changes: d1-d8, d10, d11 (d9 is a rollback): 10.
        assert_eq!(d.changes, 10);
        // Succeeded: d1-d6, d8, d11 = 8 over 10 days.
        assert_eq!(d.succeeded, 8);
        assert!((d.deployments_per_day - 0.8).abs() < 1e-9);
        // Failed: d7 (rolled back), d8 (operator rollback), d10 (failed).
        assert_eq!(d.failed_ids, vec!["d7", "d8", "d10"]);
        assert_eq!(d.change_failure_rate, Some(0.3));
        // Lead times 2, 4, 6, 8, 10 h: median 6 h, p90 10 h (nearest rank).
        let lt = d.lead_time.unwrap();
        assert_eq!((lt.n, lt.median_ms, lt.p90_ms), (5, 6 * H, 10 * H));
        // Restore: d7 3 min; d8 1 h + 1 min (d8 ended at +1 min, d9 at
        // +1 h 2 min);
        // d10 30 min (start of d10 to end of d11). Median 30 min.
        let tr = d.time_to_restore.unwrap();
        assert_eq!(tr.n, 3);
        assert_eq!(tr.median_ms, 30 * 60_000);
        assert_eq!(tr.p90_ms, H + 60_000);
        assert_eq!(d.unrestored, 0);
    }

    #[test]
    fn the_window_only_counts_changes_that_finished_in_it() {
        // The last two days: d10, d11 (and d9, a rollback, not counted).
        let d = compute(&history(), 8 * DAY + 2 * H, 10 * DAY);
        assert_eq!(d.changes, 2);
        assert_eq!(d.failed_ids, vec!["d10"]);
        assert_eq!(d.change_failure_rate, Some(0.5));
    }

    #[test]
    fn a_failure_not_yet_recovered_is_counted_as_unrestored() {
        let v = vec![change("d1", "failed", 0, 60_000)];
        let d = compute(&v, 0, DAY);
        assert_eq!(d.failed, 1);
        assert_eq!(d.unrestored, 1);
        assert_eq!(d.time_to_restore, None);
        assert_eq!(compute(&[], 0, DAY).change_failure_rate, None);
    }
}
