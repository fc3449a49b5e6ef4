//! What each host should run, by Cutover's own record: the release the
//! last deployment that touched the host left it on. A host running
//! something else drifted (a manual change, a restore from backup, a
//! deployment tool run beside Cutover). Pure: [`expected`] reads stored
//! rollouts.

use std::collections::BTreeMap;

use crate::engine::{HostPhase, Rollout};

/// What `host` should run according to `rollouts` (newest first): the
/// release, or `None` when Cutover left the service stopped there; with
/// the deployment that decided it. No entry: Cutover never changed it.
pub fn expected<'a>(
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    host: &str,
) -> Option<(Option<String>, String)> {
    for r in rollouts {
        match r.hosts.get(host) {
            Some(HostPhase::Done { .. }) => {
                return Some((Some(r.release_id.clone()), r.id.clone()));
            }
            Some(HostPhase::RolledBack) => {
                return Some((r.from.get(host).cloned().flatten(), r.id.clone()));
            }
            // Never changed by this one (failed to stage or swap, skipped,
            // or the rollout is still running): look further back.
            _ => {}
        }
    }
    None
}

/// Drift lines for each host of `hosts` (host -> what it reports active)
/// against `rollouts` (newest first).
pub fn mismatches(
    rollouts: &[Rollout],
    hosts: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (host, runs) in hosts {
        let Some((want, by)) = expected(rollouts.iter().filter(|r| r.phase.is_terminal()), host)
        else {
            continue;
        };
        if &want != runs {
            out.insert(
                host.clone(),
                format!(
                    "runs {}, but Cutover left it on {} ({by})",
                    runs.as_deref().unwrap_or("nothing"),
                    want.as_deref().unwrap_or("nothing (stopped)")
                ),
            );
        }
    }
    out
}
