//! What each host should run, by Cutover's own record: the release the
//! last deployment that touched the host left it on. A host running
//! something else drifted (a manual change, a restore from backup, a
//! deployment tool run beside Cutover). Pure: [`mismatches`] reads stored
//! rollouts.

use std::collections::BTreeMap;

use crate::engine::{HostPhase, Rollout};

/// What `r` left `host` on: the release, or `None` when Cutover left the
/// service stopped there. No answer: this rollout did not change the host
/// (failed to stage or swap, skipped, or still running).
fn left_on(r: &Rollout, host: &str) -> Option<Option<String>> {
    match r.hosts.get(host) {
        Some(HostPhase::Done { .. }) => Some(Some(r.release_id.clone())),
        Some(HostPhase::RolledBack) => Some(r.from.get(host).cloned().flatten()),
        _ => None,
    }
}

/// Drift lines for each host of `hosts` (host -> what it reports active)
/// against `rollouts`, newest first. Reads rollouts only until every host
/// is settled: they can be large (one entry per host of a fleet).
pub fn mismatches(
    rollouts: impl IntoIterator<Item = Rollout>,
    hosts: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    let mut open: Vec<&String> = hosts.keys().collect();
    let mut out = BTreeMap::new();
    for r in rollouts {
        if open.is_empty() {
            break;
        }
        if !r.phase.is_terminal() {
            continue;
        }
        open.retain(|host| {
            let Some(want) = left_on(&r, host) else {
                return true;
            };
            let runs = &hosts[*host];
            if &want != runs {
                out.insert(
                    (*host).clone(),
                    format!(
                        "runs {}, but Cutover left it on {} ({})",
                        runs.as_deref().unwrap_or("nothing"),
                        want.as_deref().unwrap_or("nothing (stopped)"),
                        r.id
                    ),
                );
            }
            false
        });
    }
    out
}
