//! What a rollout can be asked without changing it: command ids and the
//! hosts they name, the batch under way, what it waits on, the commands
//! in flight (to send again after a restart) and a one-line summary.

use super::*;

impl Rollout {
    pub(super) fn positions(&self) -> &(std::collections::HashMap<String, usize>, Vec<String>) {
        self.index_cache.0.get_or_init(|| {
            let by_index: Vec<String> = self.hosts.keys().cloned().collect();
            let by_host = by_index
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), i))
                .collect();
            (by_host, by_index)
        })
    }

    pub(super) fn index(&self, host: &str) -> usize {
        self.positions().0.get(host).copied().unwrap_or(usize::MAX)
    }

    /// The command id of `kind` for `host`: deterministic, so a resumed
    /// rollout re-sends the very same commands and agents answer from their
    /// journal instead of acting twice.
    /// A staging tried again gets an id of its own (`d7-stage_2-3`): the
    /// agent journals the first try's failure under the first id.
    pub fn command_id(&self, kind: CommandKind, host: &str) -> String {
        let idx = self.index(host);
        match (kind, self.stage_retries.get(host)) {
            (CommandKind::Stage, Some(n)) => format!("{}-stage_{}-{idx}", self.id, n + 1),
            _ => format!("{}-{}-{idx}", self.id, kind.as_str()),
        }
    }

    /// Which of this rollout's commands to `host` `command_id` is, if any.
    pub(super) fn kind_of(&self, host: &str, command_id: &str) -> Option<CommandKind> {
        if !self.hosts.contains_key(host) {
            return None;
        }
        CommandKind::ALL
            .into_iter()
            .find(|k| self.command_id(*k, host) == command_id)
    }

    /// The batch currently being activated or waited on, if any.
    pub fn current_batch(&self) -> Option<usize> {
        match self.phase {
            Phase::Activating { batch } | Phase::Waiting { batch, .. } => Some(batch),
            _ => None,
        }
    }

    /// Canary hosts (on the new release) and baseline hosts (not yet
    /// changed) for the analysis of `batch`.
    pub fn analysis_groups(&self, batch: usize) -> (Vec<String>, Vec<String>) {
        let canary = self
            .hosts
            .iter()
            .filter(|(_, p)| matches!(p, HostPhase::Done { .. }))
            .map(|(h, _)| h.clone())
            .collect();
        let baseline = self.batches[batch + 1..]
            .iter()
            .flatten()
            .cloned()
            .collect();
        (canary, baseline)
    }

    /// Why the rollout is not moving, for `cutover status`.
    pub fn blocked_on(&self, now: i64) -> Option<String> {
        let unpaused = self.blocked_on_unpaused(now);
        if !self.paused {
            return unpaused;
        }
        // A pause shows whatever the phase: what goes on, what waits.
        let resume = format!("`cutover resume {}` to go on", self.id);
        match &self.phase {
            Phase::Staging => {
                let staged = self
                    .hosts
                    .values()
                    .filter(|p| matches!(p, HostPhase::Staged))
                    .count();
                let staging = if staged < self.hosts.len() {
                    ", staging goes on"
                } else {
                    ""
                };
                Some(format!(
                    "paused by an operator: {staged}/{} hosts staged{staging}, no batch starts; {resume}",
                    self.hosts.len()
                ))
            }
            Phase::Stopping => Some(format!(
                "paused by an operator: the old release keeps running; {resume}"
            )),
            Phase::Activating { batch } => {
                let hosts = &self.batches[*batch];
                let done = hosts
                    .iter()
                    .filter(|h| matches!(self.hosts[*h], HostPhase::Done { .. }))
                    .count();
                Some(if done == hosts.len() {
                    format!(
                        "paused by an operator after batch {}/{}; {resume}",
                        batch + 1,
                        self.batches.len()
                    )
                } else {
                    format!(
                        "paused by an operator: batch {}/{} finishes ({done}/{} hosts healthy), then no batch starts; {resume}",
                        batch + 1,
                        self.batches.len(),
                        hosts.len()
                    )
                })
            }
            Phase::Waiting { batch, .. } => Some(format!(
                "step {}/{}: paused by an operator (the bake does not end, nothing is promoted); {resume}",
                batch + 1,
                self.batches.len()
            )),
            _ => unpaused,
        }
    }

    fn blocked_on_unpaused(&self, now: i64) -> Option<String> {
        match &self.phase {
            Phase::Staging if self.awaiting_approval => Some(format!(
                "waiting for approval: `cutover approve {}` by an operator other than the submitter",
                self.id
            )),
            Phase::Staging => {
                let staged = self
                    .hosts
                    .values()
                    .filter(|p| matches!(p, HostPhase::Staged))
                    .count();
                Some(format!("{staged}/{} hosts staged", self.hosts.len()))
            }
            Phase::Activating { batch } => {
                let hosts = &self.batches[*batch];
                let done = hosts
                    .iter()
                    .filter(|h| matches!(self.hosts[*h], HostPhase::Done { .. }))
                    .count();
                let oldest = hosts
                    .iter()
                    .filter_map(|h| match self.hosts[h] {
                        HostPhase::Activating { since_ms } => Some(since_ms),
                        _ => None,
                    })
                    .min();
                let wait = oldest
                    .map(|s| {
                        format!(
                            ", healthy deadline in {}s",
                            ((s + self.healthy_deadline_ms - now) / 1000).max(0)
                        )
                    })
                    .unwrap_or_default();
                Some(format!(
                    "batch {}/{}: {done}/{} hosts healthy{wait}",
                    batch + 1,
                    self.batches.len(),
                    hosts.len()
                ))
            }
            Phase::Waiting {
                batch,
                until_ms,
                retries,
            } => {
                let step = format!("step {}/{}", batch + 1, self.batches.len());
                let healthy = self
                    .hosts
                    .values()
                    .filter(|p| matches!(p, HostPhase::Done { .. }))
                    .count();
                Some(match until_ms {
                    None => format!("{step}: waiting for `cutover promote {}`", self.id),
                    Some(_) if self.analysis_wanted.is_some() => {
                        format!("{step}: analysing canaries against the baseline")
                    }
                    Some(t) => format!(
                        "{step}: {healthy} canary host(s) healthy, waiting {}s more{}",
                        ((t - now) / 1000).max(0),
                        if *retries > 0 {
                            format!(" (analysis inconclusive {retries} time(s))")
                        } else {
                            String::new()
                        }
                    ),
                })
            }
            Phase::Stopping => {
                let left = self
                    .hosts
                    .values()
                    .filter(|p| matches!(p, HostPhase::Stopping { .. }))
                    .count();
                Some(format!("stopping the old release: {left} host(s) left"))
            }
            Phase::Switching { .. } => Some("running the switch command".into()),
            Phase::RollingBack { .. } => {
                let left = self
                    .hosts
                    .values()
                    .filter(|p| matches!(p, HostPhase::RollingBack))
                    .count();
                Some(format!("rolling back: {left} host(s) still going back"))
            }
            _ => None,
        }
    }

    /// Why an operator's `ev` would change nothing now, or could not be
    /// carried out safely: refused saying so rather than accepted and
    /// ignored.
    pub fn refuses(&self, ev: &Event) -> Option<String> {
        let id = &self.id;
        match ev {
            Event::Promote if !matches!(self.phase, Phase::Waiting { .. }) => Some(format!(
                "nothing waits for a promote: deployment {id} is {}",
                self.phase.name()
            )),
            // Promoted while paused, the next step would be held, and the
            // promote lost (a manual step would wait for another).
            Event::Promote if self.paused => Some(format!(
                "deployment {id} is paused: `cutover resume {id}` first, then promote"
            )),
            Event::Resume if !self.paused => Some(format!("deployment {id} is not paused")),
            Event::Approve { .. } if !self.awaiting_approval => Some(match &self.approved_by {
                Some(by) => format!("deployment {id} was approved already, by {by}"),
                None if self.approval_required => {
                    format!(
                        "deployment {id} is not waiting for approval yet (it is {})",
                        self.phase.name()
                    )
                }
                None => {
                    format!("deployment {id} needs no approval (its spec does not ask for one)")
                }
            }),
            Event::Abort | Event::Rollback if matches!(self.phase, Phase::Switching { .. }) => {
                Some(format!(
                    "deployment {id} is running its switch command: traffic may be moving to the new group; \
                     wait for it to end, then `cutover rollback {}` switches back",
                    self.service
                ))
            }
            _ => None,
        }
    }

    /// Commands in flight (see [`Rollout::resume`]).
    pub fn in_flight(&self) -> Vec<Effect> {
        self.hosts
            .iter()
            .filter_map(|(h, p)| match p {
                HostPhase::Staging => Some(Effect::Stage {
                    host: h.clone(),
                    command_id: self.command_id(CommandKind::Stage, h),
                }),
                HostPhase::Activating { .. } => Some(Effect::Activate {
                    host: h.clone(),
                    command_id: self.command_id(CommandKind::Activate, h),
                }),
                HostPhase::Stopping { .. } => Some(Effect::Stop {
                    host: h.clone(),
                    command_id: self.command_id(CommandKind::Stop, h),
                }),
                HostPhase::RollingBack => Some(Effect::Revert {
                    host: h.clone(),
                    command_id: self.command_id(CommandKind::Revert, h),
                    to: self.from.get(h).cloned().flatten(),
                }),
                _ => None,
            })
            .collect()
    }

    /// "3/6 hosts on v2" and the like.
    pub fn summary(&self) -> String {
        let done = self
            .hosts
            .values()
            .filter(|p| matches!(p, HostPhase::Done { .. }))
            .count();
        let failed = self.failed_count();
        let back = self
            .hosts
            .values()
            .filter(|p| matches!(p, HostPhase::RolledBack))
            .count();
        let mut s = format!("{done}/{} on {}", self.hosts.len(), self.version);
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        if back > 0 {
            s.push_str(&format!(", {back} rolled back"));
        }
        let skipped = self
            .hosts
            .values()
            .filter(|p| matches!(p, HostPhase::Skipped { .. }))
            .count();
        if skipped > 0 {
            s.push_str(&format!(", {skipped} skipped (drained)"));
        }
        s
    }
}
