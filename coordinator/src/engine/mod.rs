//! The rollout engine: a pure state machine. [`Rollout::step`] takes an
//! event and the time and returns the effects (commands to hosts, or the
//! blue/green switch, which the coordinator runs) for a runner to carry
//! out; it does no I/O, so it is tested with simulated agents and made-up
//! clocks, and the same events always give the same effects. [`plan`]
//! computes the batches a spec makes against the fleet.
//!
//! Strategies: `rolling` (stage everywhere in parallel, then activate
//! batch by batch), `recreate` (stage everywhere, stop the old release
//! everywhere, then start the new one everywhere: two versions never serve
//! at once; agents keep the listening sockets, so clients queue
//! meanwhile), `canary` (steps with bakes, analysis and manual promotes)
//! and `blue_green` (the idle group, then the switch). Automatic rollback
//! on: more failed hosts than `max_failed`, a host not healthy within
//! `healthy_deadline`, a done host whose health degrades during the
//! rollout, a failed canary analysis, `progress_deadline` passed. Rollback
//! sends each changed host back, in parallel, to the release it ran before
//! (a `Rollback` command: already staged, no download), or stops the
//! service where it ran none.

mod plan;
mod state;
#[cfg(test)]
mod tests;
mod view;

pub use plan::{Candidate, Plan, PlanError, StepPolicy, plan, plan_with};
pub use state::{
    ACTIVE_PHASES, CommandKind, Effect, Event, HostPhase, IndexCache, Note, Phase, TERMINAL_PHASES,
    is_terminal_name,
};

use std::collections::BTreeMap;

use cutover_common::deploy::{DeploySpec, StrategyKind};
use cutover_common::failure::Failure;

/// How many times a host's staging is tried again by the rollout after a
/// transient failure (each after the agent's own retries, ~13 s).
pub const STAGE_RETRIES: u32 = 2;

use serde::{Deserialize, Serialize};

/// A rollout in progress (or finished), with everything needed to resume
/// it after a coordinator crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub service: String,
    pub version: String,
    pub release_id: String,
    pub strategy: StrategyKind,
    pub batches: Vec<Vec<String>>,
    pub hosts: BTreeMap<String, HostPhase>,
    pub from: BTreeMap<String, Option<String>>,
    pub phase: Phase,
    pub paused: bool,
    pub max_failed: usize,
    pub auto_rollback: bool,
    pub healthy_deadline_ms: i64,
    pub progress_deadline_ms: i64,
    /// How long a host is watched after its swap (`swap.min_ready`) before
    /// its batch counts as done: a host turning unhealthy meanwhile fails,
    /// the last batch's hosts included, and the rollout does not succeed.
    #[serde(default)]
    pub watch_ms: i64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// Fencing epoch carried by every command.
    pub epoch: u64,
    pub notes: Vec<Note>,
    /// Failed hosts that may run the new release (health degraded after
    /// their swap, or late to answer): a rollback reverts them too.
    #[serde(default)]
    pub degraded: Vec<String>,
    /// What to do after each batch (canary steps).
    #[serde(default)]
    pub steps: Vec<StepPolicy>,
    /// The batch whose analysis the runner should compute now.
    #[serde(default)]
    pub analysis_wanted: Option<usize>,
    /// Every analysis verdict with its numbers.
    #[serde(default)]
    pub verdicts: Vec<(usize, crate::analysis::Report)>,
    /// Blue/green: the group deployed to and the group serving before.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub old_group: Option<String>,
    /// Blue/green: which group serves once this rollout ended.
    #[serde(default)]
    pub live_group_after: Option<String>,
    /// Counts the stored versions of this rollout (each write adds one):
    /// a watch resumes after the last it saw.
    #[serde(default)]
    pub revision: u64,
    /// Blue/green: the switch command failed, so traffic may be on either
    /// group (both left running).
    #[serde(default)]
    pub traffic_unknown: bool,
    /// Blue/green: an operator's switch back to the group that served
    /// before deployment `rollback_of` (no host changes).
    #[serde(default)]
    pub switch_back: bool,
    /// The progress deadline counts from here: the last batch start.
    #[serde(default)]
    pub progress_since_ms: i64,
    /// When the rollback started (reverts get `healthy_deadline` too).
    #[serde(default)]
    pub rollback_since_ms: Option<i64>,
    /// A batch held back by a pause, started on resume.
    #[serde(default)]
    pub held_batch: Option<usize>,
    /// Hosts whose staging failed for a transient reason, and how many
    /// times it was tried again (each try is a new command id).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_retries: BTreeMap<String, u32>,
    /// The spec's `targets.approval`: no host changes before a person
    /// approves.
    #[serde(default)]
    pub approval_required: bool,
    /// Staged everywhere, waiting for that approval.
    #[serde(default)]
    pub awaiting_approval: bool,
    /// Who approved it.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// Host -> position, for command ids (the host set never changes).
    #[serde(skip)]
    pub(crate) index_cache: IndexCache,
}

impl Rollout {
    /// A rollout of `plan`, not started.
    pub fn new(
        id: &str,
        spec: &DeploySpec,
        version: &str,
        release_id: &str,
        plan: Plan,
        epoch: u64,
        now_ms: i64,
    ) -> Rollout {
        let hosts = plan
            .batches
            .iter()
            .flatten()
            .map(|h| (h.clone(), HostPhase::Pending))
            .collect();
        let steps = plan.steps.clone();
        let notes = plan
            .skipped
            .iter()
            .map(|(h, why)| Note {
                at_ms: now_ms,
                message: format!("{h}: left out: {why}"),
            })
            .collect();
        Rollout {
            id: id.into(),
            service: spec.service.clone(),
            version: version.into(),
            release_id: release_id.into(),
            strategy: spec.strategy.kind,
            batches: plan.batches,
            hosts,
            from: plan.from,
            phase: Phase::Staging,
            paused: false,
            max_failed: plan.max_failed,
            auto_rollback: spec.rollback.auto,
            healthy_deadline_ms: spec.strategy.healthy_deadline.as_millis() as i64,
            progress_deadline_ms: spec.strategy.progress_deadline.as_millis() as i64,
            watch_ms: spec.swap.min_ready.as_millis() as i64,
            started_ms: now_ms,
            finished_ms: None,
            epoch,
            notes,
            degraded: Vec::new(),
            steps,
            analysis_wanted: None,
            verdicts: Vec::new(),
            group: plan.group.clone(),
            old_group: plan.old_group.clone(),
            live_group_after: None,
            revision: 0,
            traffic_unknown: false,
            switch_back: false,
            progress_since_ms: now_ms,
            index_cache: IndexCache::default(),
            rollback_since_ms: None,
            held_batch: None,
            stage_retries: BTreeMap::new(),
            approval_required: spec.targets.approval,
            awaiting_approval: false,
            approved_by: None,
        }
    }

    fn note(&mut self, now: i64, m: impl Into<String>) {
        self.notes.push(Note {
            at_ms: now,
            message: m.into(),
        });
    }

    fn failed_count(&self) -> usize {
        self.hosts.values().filter(|p| p.is_failed()).count()
    }

    /// Applies an event at `now` (Unix ms). Pure: returns the commands to send.
    pub fn step(&mut self, ev: Event, now: i64) -> Vec<Effect> {
        if self.phase.is_terminal() {
            return Vec::new();
        }
        let mut out = Vec::new();
        match ev {
            Event::Start => {
                self.note(
                    now,
                    format!(
                        "staging {} on {} host(s)",
                        self.release_id,
                        self.hosts.len()
                    ),
                );
                let hosts: Vec<String> = self.hosts.keys().cloned().collect();
                for h in hosts {
                    self.hosts.insert(h.clone(), HostPhase::Staging);
                    out.push(Effect::Stage {
                        command_id: self.command_id(CommandKind::Stage, &h),
                        host: h,
                    });
                }
            }
            Event::Result {
                host,
                command_id,
                ok,
                message,
                failure,
            } => out.extend(self.record_result(host, command_id, ok, message, failure, now)),
            Event::Unhealthy { host, status } => {
                if matches!(self.hosts.get(&host), Some(HostPhase::Done { .. }))
                    && !matches!(self.phase, Phase::RollingBack { .. })
                {
                    self.note(
                        now,
                        format!("{host}: health degraded ({status}) after its swap"),
                    );
                    self.hosts.insert(
                        host.clone(),
                        HostPhase::Failed {
                            reason: format!("health degraded: {status}"),
                        },
                    );
                    // It runs the new release: a rollback reverts it too.
                    self.degraded.push(host);
                }
            }
            Event::Tick => {
                if let (Phase::RollingBack { .. }, Some(since)) =
                    (&self.phase, self.rollback_since_ms)
                    && now - since > self.healthy_deadline_ms
                {
                    let stuck: Vec<String> = self
                        .hosts
                        .iter()
                        .filter(|(_, p)| matches!(p, HostPhase::RollingBack))
                        .map(|(h, _)| h.clone())
                        .collect();
                    for h in stuck {
                        self.note(
                            now,
                            format!("{h}: no answer to its rollback within the healthy deadline"),
                        );
                        self.hosts.insert(
                            h,
                            HostPhase::RollbackFailed {
                                reason: "no answer within healthy_deadline".into(),
                            },
                        );
                    }
                }
                if !matches!(self.phase, Phase::RollingBack { .. }) {
                    let late: Vec<String> = self
                        .hosts
                        .iter()
                        .filter_map(|(h, p)| match p {
                            HostPhase::Activating { since_ms }
                            | HostPhase::Stopping { since_ms }
                                if now - since_ms > self.healthy_deadline_ms =>
                            {
                                Some(h.clone())
                            }
                            _ => None,
                        })
                        .collect();
                    for h in late {
                        self.note(now, format!("{h}: not healthy within the healthy deadline"));
                        self.degraded.push(h.clone());
                        self.hosts.insert(
                            h,
                            HostPhase::Failed {
                                reason: "not healthy within healthy_deadline".into(),
                            },
                        );
                    }
                    // The deadline counts from the last batch start; a step
                    // baking or waiting for an operator is not stuck.
                    let since = self.progress_since_ms.max(self.started_ms);
                    // Nor is the switch command, which has its own timeout.
                    let waiting =
                        matches!(self.phase, Phase::Waiting { .. } | Phase::Switching { .. })
                            || self.paused
                            || self.awaiting_approval;
                    if now - since > self.progress_deadline_ms && !waiting {
                        return self.begin_rollback(now, "progress deadline passed".into(), false);
                    }
                    if let Phase::Waiting {
                        batch,
                        until_ms: Some(t),
                        ..
                    } = self.phase
                        && now >= t
                        && self.analysis_wanted.is_none()
                        && !self.paused
                    {
                        let analysis = self.steps.get(batch).is_some_and(|s| s.analysis);
                        let has_baseline = batch + 1 < self.batches.len();
                        if analysis && has_baseline {
                            self.analysis_wanted = Some(batch);
                        } else {
                            return self.start_batch(batch + 1, now);
                        }
                    }
                }
            }
            Event::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.note(now, "paused: no new batch will start");
                }
            }
            Event::Resume => {
                if self.paused {
                    self.paused = false;
                    self.note(now, "resumed");
                    if matches!(self.phase, Phase::Stopping)
                        && !self
                            .hosts
                            .values()
                            .any(|p| matches!(p, HostPhase::Stopping { .. } | HostPhase::Stopped))
                    {
                        return self.begin_stop(now);
                    }
                    if let Some(b) = self.held_batch.take() {
                        return self.start_batch(b, now);
                    }
                }
            }
            Event::Promote => {
                if let Phase::Waiting { batch, .. } = self.phase {
                    self.note(now, format!("step {} promoted by an operator", batch + 1));
                    self.analysis_wanted = None;
                    return self.start_batch(batch + 1, now);
                }
                self.note(now, "promote ignored: no canary step is waiting");
            }
            Event::Analysis { batch, report } => {
                if self.analysis_wanted != Some(batch) {
                    return out;
                }
                self.analysis_wanted = None;
                let numbers: Vec<String> = report
                    .metrics
                    .iter()
                    .map(|m| format!("{} {:?}: {}", m.metric, m.verdict, m.why))
                    .collect();
                self.note(
                    now,
                    format!(
                        "step {} analysis: {:?} ({})",
                        batch + 1,
                        report.verdict,
                        numbers.join("; ")
                    ),
                );
                let verdict = report.verdict.clone();
                self.verdicts.push((batch, report));
                match verdict {
                    crate::analysis::Verdict::Pass => return self.start_batch(batch + 1, now),
                    crate::analysis::Verdict::Fail => {
                        return self.begin_rollback(
                            now,
                            format!("canary analysis failed at step {}", batch + 1),
                            false,
                        );
                    }
                    crate::analysis::Verdict::Inconclusive => {
                        let Phase::Waiting { retries, .. } = self.phase else {
                            return out;
                        };
                        let pause = self
                            .steps
                            .get(batch)
                            .and_then(|s| s.pause_ms)
                            .unwrap_or(10_000)
                            .max(5_000);
                        self.phase = if retries + 1 >= 3 {
                            self.note(now, "analysis still inconclusive: waiting for `cutover promote` or `cutover abort`");
                            Phase::Waiting {
                                batch,
                                until_ms: None,
                                retries: retries + 1,
                            }
                        } else {
                            Phase::Waiting {
                                batch,
                                until_ms: Some(now + pause),
                                retries: retries + 1,
                            }
                        };
                    }
                }
            }
            Event::Switched { ok, detail } => {
                if !matches!(self.phase, Phase::Switching { .. }) {
                    return out;
                }
                if ok {
                    self.note(
                        now,
                        format!(
                            "traffic switched to group {}: {detail}",
                            self.group.clone().unwrap_or_default()
                        ),
                    );
                    self.live_group_after = self.group.clone();
                    self.finish(now, Phase::Succeeded);
                    return out;
                }
                // Traffic may or may not have moved: stopping either group
                // could take the service down. Leave both, and say so.
                self.note(
                    now,
                    format!("switch command failed: {detail}; both groups left running"),
                );
                self.live_group_after = None;
                self.traffic_unknown = true;
                self.finish(now, Phase::Failed {
                    reason: format!("switch command failed ({detail}): check where traffic goes, then `cutover rollback {}` or deploy again", self.service),
                });
                return out;
            }
            Event::Lost { host } => {
                // A lost host cannot be staged; one already swapping gets its
                // healthy deadline (it may finish and report when it returns).
                if matches!(
                    self.hosts.get(&host),
                    Some(HostPhase::Pending | HostPhase::Staging | HostPhase::Staged)
                ) {
                    self.note(
                        now,
                        format!("{host}: lost (no heartbeat): left out of this rollout"),
                    );
                    self.hosts.insert(
                        host,
                        HostPhase::Failed {
                            reason: "host lost".into(),
                        },
                    );
                }
            }
            Event::Approve { by } => {
                if self.awaiting_approval {
                    self.awaiting_approval = false;
                    self.note(now, format!("approved by {by}"));
                    self.approved_by = Some(by);
                }
            }
            Event::Abort => return self.begin_rollback(now, "aborted by an operator".into(), true),
            Event::Rollback => {
                return self.begin_rollback(now, "rolled back by an operator".into(), false);
            }
        }
        out.extend(self.advance(now));
        out
    }

    /// Applies many events in order, like [`Rollout::step`] on each, but
    /// a run of consecutive results is recorded first and the rollout
    /// advanced once after it: with thousands of hosts answering at once,
    /// one pass over the hosts instead of one per answer.
    pub fn step_all(&mut self, evs: Vec<Event>, now: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut pending = false;
        for ev in evs {
            if self.phase.is_terminal() {
                break;
            }
            match ev {
                Event::Result {
                    host,
                    command_id,
                    ok,
                    message,
                    failure,
                } => {
                    out.extend(self.record_result(host, command_id, ok, message, failure, now));
                    pending = true;
                }
                ev => {
                    if std::mem::take(&mut pending) {
                        out.extend(self.advance(now));
                    }
                    out.extend(self.step(ev, now));
                }
            }
        }
        if pending && !self.phase.is_terminal() {
            out.extend(self.advance(now));
        }
        out
    }

    /// Records one command result on its host (without advancing); a
    /// transient staging failure is tried again (the command to send).
    fn record_result(
        &mut self,
        host: String,
        command_id: String,
        ok: bool,
        message: String,
        failure: Option<Failure>,
        now: i64,
    ) -> Vec<Effect> {
        // Only this host's own commands count (a host answering for
        // another host's command id, or an earlier try, matches nothing).
        let Some(kind) = self.kind_of(&host, &command_id) else {
            return Vec::new();
        };
        // Agents older than `CommandResult.failure` say it in words.
        let drained = failure == Some(Failure::Drained)
            || (failure.is_none() && message.starts_with(cutover_common::SKIPPED_DRAINED));
        let cur = self.hosts.get(&host).cloned();
        match (kind, cur) {
            (CommandKind::Stage, Some(HostPhase::Staging)) => {
                let tries = self.stage_retries.get(&host).copied().unwrap_or(0);
                if !ok && failure.is_some_and(Failure::is_retryable) && tries < STAGE_RETRIES {
                    self.stage_retries.insert(host.clone(), tries + 1);
                    self.note(
                        now,
                        format!(
                            "{host}: staging failed for now ({message}); trying again ({} of {STAGE_RETRIES})",
                            tries + 1
                        ),
                    );
                    return vec![Effect::Stage {
                        command_id: self.command_id(CommandKind::Stage, &host),
                        host,
                    }];
                }
                let p = if ok {
                    HostPhase::Staged
                } else {
                    self.note(now, format!("{host}: staging failed: {message}"));
                    HostPhase::Failed { reason: message }
                };
                self.hosts.insert(host, p);
            }
            (
                CommandKind::Stop | CommandKind::Activate,
                Some(HostPhase::Stopping { .. } | HostPhase::Activating { .. }),
            ) if !ok && drained => {
                self.note(
                    now,
                    format!(
                        "{host}: skipped, drained by an operator during the rollout: {message}"
                    ),
                );
                self.hosts
                    .insert(host, HostPhase::Skipped { reason: message });
            }
            (CommandKind::Stop, Some(HostPhase::Stopping { .. })) => {
                let p = if ok {
                    HostPhase::Stopped
                } else {
                    self.note(
                        now,
                        format!("{host}: stopping the old release failed: {message}"),
                    );
                    // It may still run the old release: a rollback
                    // starts it again either way.
                    self.degraded.push(host.clone());
                    HostPhase::Failed {
                        reason: format!("stop failed: {message}"),
                    }
                };
                self.hosts.insert(host, p);
            }
            (CommandKind::Activate, Some(HostPhase::Activating { .. })) => {
                let p = if ok {
                    self.note(now, format!("{host}: runs {}", self.release_id));
                    HostPhase::Done { at_ms: now }
                } else {
                    if self.strategy == StrategyKind::Recreate
                        && self.from.get(&host).is_some_and(Option::is_some)
                    {
                        // Its old release was stopped first: a
                        // rollback must start it again.
                        self.note(now, format!("{host}: start failed: {message}"));
                        self.degraded.push(host.clone());
                    } else {
                        self.note(
                            now,
                            format!("{host}: swap failed, still on its old release: {message}"),
                        );
                    }
                    HostPhase::Failed { reason: message }
                };
                self.hosts.insert(host, p);
            }
            (CommandKind::Activate, Some(HostPhase::RollingBack)) if !ok => {
                // The swap failed on its own: the host never left
                // its old release. The revert (queued behind it)
                // will answer too.
            }
            (CommandKind::Revert, Some(HostPhase::RollingBack)) => {
                let p = if ok {
                    self.note(
                        now,
                        format!(
                            "{host}: back on {}",
                            self.from
                                .get(&host)
                                .cloned()
                                .flatten()
                                .unwrap_or_else(|| "nothing (stopped)".into())
                        ),
                    );
                    HostPhase::RolledBack
                } else {
                    self.note(now, format!("{host}: rollback failed: {message}"));
                    HostPhase::RollbackFailed { reason: message }
                };
                self.hosts.insert(host, p);
            }
            _ => {}
        }
        Vec::new()
    }

    /// Moves to the next phase when the current one is complete.
    fn advance(&mut self, now: i64) -> Vec<Effect> {
        if self.failed_count() > self.max_failed && !matches!(self.phase, Phase::RollingBack { .. })
        {
            let reason = format!(
                "{} host(s) failed, more than max_failed ({})",
                self.failed_count(),
                self.max_failed
            );
            if self.auto_rollback {
                return self.begin_rollback(now, reason, false);
            }
            self.finish(
                now,
                Phase::Failed {
                    reason: format!("{reason}; automatic rollback is off"),
                },
            );
            return Vec::new();
        }
        match self.phase.clone() {
            Phase::Staging => {
                if self.held_batch.is_some()
                    || self.hosts.values().any(|p| matches!(p, HostPhase::Staging))
                {
                    return Vec::new();
                }
                if self.approval_required && self.approved_by.is_none() {
                    if !self.awaiting_approval {
                        self.awaiting_approval = true;
                        self.note(
                            now,
                            format!(
                                "staged everywhere; waiting for approval: `cutover approve {}` (an operator other than the submitter)",
                                self.id
                            ),
                        );
                    }
                    return Vec::new();
                }
                self.note(now, "staged everywhere");
                if self.strategy == StrategyKind::Recreate {
                    return self.begin_stop(now);
                }
                self.start_batch(0, now)
            }
            Phase::Stopping => {
                if self.stop_held()
                    || self
                        .hosts
                        .values()
                        .any(|p| matches!(p, HostPhase::Stopping { .. }))
                {
                    return Vec::new();
                }
                self.note(now, "old release stopped everywhere");
                self.start_batch(0, now)
            }
            Phase::Activating { batch } => {
                // A host is in flight while it swaps, and then while it is
                // watched (`watch_ms`) on the new release.
                let in_flight = self.batches[batch].iter().any(|h| {
                    matches!(self.hosts[h], HostPhase::Activating { .. })
                        || matches!(self.hosts[h], HostPhase::Done { at_ms } if now - at_ms < self.watch_ms)
                });
                if in_flight || self.paused {
                    return Vec::new();
                }
                let step = self.steps.get(batch).cloned().unwrap_or_default();
                if step.switch {
                    self.note(
                        now,
                        format!(
                            "group {} healthy: switching traffic to it",
                            self.group.clone().unwrap_or_default()
                        ),
                    );
                    self.phase = Phase::Switching { batch };
                    return self.switch_effect().into_iter().collect();
                }
                // The last batch waits too when its step asks for a pause
                // or a promote: a final bake of the whole fleet, during which
                // a host turning unhealthy still rolls everything back.
                // Analysis needs hosts left on the old release.
                let last = batch + 1 >= self.batches.len();
                if step.manual || step.pause_ms.is_some() || (step.analysis && !last) {
                    let until_ms = if step.manual {
                        None
                    } else {
                        Some(now + step.pause_ms.unwrap_or(0))
                    };
                    let msg = match until_ms {
                        None => format!("step {} healthy: waiting for promote", batch + 1),
                        Some(t) => format!(
                            "step {} healthy: baking for {}s",
                            batch + 1,
                            (t - now) / 1000
                        ),
                    };
                    self.note(now, msg);
                    self.phase = Phase::Waiting {
                        batch,
                        until_ms,
                        retries: 0,
                    };
                    return Vec::new();
                }
                self.start_batch(batch + 1, now)
            }
            Phase::RollingBack { reason, aborted } => {
                if self
                    .hosts
                    .values()
                    .any(|p| matches!(p, HostPhase::RollingBack))
                {
                    return Vec::new();
                }
                let failed: Vec<String> = self
                    .hosts
                    .iter()
                    .filter(|(_, p)| matches!(p, HostPhase::RollbackFailed { .. }))
                    .map(|(h, _)| h.clone())
                    .collect();
                let end = if !failed.is_empty() {
                    Phase::Failed {
                        reason: format!("{reason}; rollback failed on {}", failed.join(", ")),
                    }
                } else if aborted {
                    Phase::Aborted { reason }
                } else {
                    Phase::RolledBack { reason }
                };
                self.finish(now, end);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Recreate, paused before anything was stopped.
    fn stop_held(&self) -> bool {
        self.paused
            && !self
                .hosts
                .values()
                .any(|p| matches!(p, HostPhase::Stopping { .. } | HostPhase::Stopped))
    }

    /// Recreate: stop the old release on every staged host that runs one.
    fn begin_stop(&mut self, now: i64) -> Vec<Effect> {
        self.phase = Phase::Stopping;
        if self.paused {
            self.note(
                now,
                "paused: the old release keeps running until `cutover resume`",
            );
            return Vec::new();
        }
        let running: Vec<String> = self
            .hosts
            .iter()
            // A host already running the release is left as it is: its
            // activation answers "already active".
            .filter(|(h, p)| {
                matches!(p, HostPhase::Staged)
                    && self
                        .from
                        .get(*h)
                        .is_some_and(|f| f.as_deref().is_some_and(|f| f != self.release_id))
            })
            .map(|(h, _)| h.clone())
            .collect();
        self.progress_since_ms = now;
        if running.is_empty() {
            return self.start_batch(0, now);
        }
        self.note(
            now,
            format!(
                "stopping the old release on {} (recreate; sockets stay open)",
                running.join(", ")
            ),
        );
        running
            .into_iter()
            .map(|h| {
                self.hosts
                    .insert(h.clone(), HostPhase::Stopping { since_ms: now });
                Effect::Stop {
                    command_id: self.command_id(CommandKind::Stop, &h),
                    host: h,
                }
            })
            .collect()
    }

    fn start_batch(&mut self, batch: usize, now: i64) -> Vec<Effect> {
        if self.paused && batch < self.batches.len() {
            // Asked again at every tick while paused: said once.
            if self.held_batch != Some(batch) {
                self.held_batch = Some(batch);
                self.note(
                    now,
                    format!("batch {} held: the rollout is paused", batch + 1),
                );
            }
            return Vec::new();
        }
        self.progress_since_ms = now;
        let mut b = batch;
        while b < self.batches.len() {
            let staged: Vec<String> = self.batches[b]
                .iter()
                .filter(|h| matches!(self.hosts[*h], HostPhase::Staged | HostPhase::Stopped))
                .cloned()
                .collect();
            if staged.is_empty() {
                b += 1;
                continue;
            }
            self.phase = Phase::Activating { batch: b };
            self.note(
                now,
                format!(
                    "batch {}/{}: activating {}",
                    b + 1,
                    self.batches.len(),
                    staged.join(", ")
                ),
            );
            return staged
                .into_iter()
                .map(|h| {
                    self.hosts
                        .insert(h.clone(), HostPhase::Activating { since_ms: now });
                    Effect::Activate {
                        command_id: self.command_id(CommandKind::Activate, &h),
                        host: h,
                    }
                })
                .collect();
        }
        let done = self
            .hosts
            .values()
            .filter(|p| matches!(p, HostPhase::Done { .. }))
            .count();
        if done == 0 {
            self.finish(
                now,
                Phase::Failed {
                    reason: "no host took the new release".into(),
                },
            );
        } else {
            self.finish(now, Phase::Succeeded);
        }
        Vec::new()
    }

    fn begin_rollback(&mut self, now: i64, reason: String, aborted: bool) -> Vec<Effect> {
        if matches!(self.phase, Phase::RollingBack { .. }) || self.phase.is_terminal() {
            return Vec::new();
        }
        if matches!(self.phase, Phase::Switching { .. }) {
            // Traffic may be moving to the new group: stopping it now could
            // take the service down. The switch ends the rollout either way;
            // `cutover rollback` then switches back.
            self.note(
                now,
                format!("not rolled back while the switch command runs: {reason}"),
            );
            return Vec::new();
        }
        self.note(now, format!("rolling back: {reason}"));
        self.phase = Phase::RollingBack { reason, aborted };
        self.rollback_since_ms = Some(now);
        let changed: Vec<String> = self
            .hosts
            .iter()
            .filter(|(h, p)| {
                matches!(
                    p,
                    HostPhase::Done { .. }
                        | HostPhase::Activating { .. }
                        | HostPhase::Stopping { .. }
                        | HostPhase::Stopped
                ) || self.degraded.contains(h)
            })
            .map(|(h, _)| h.clone())
            .collect();
        let mut out = Vec::new();
        for h in changed {
            self.hosts.insert(h.clone(), HostPhase::RollingBack);
            out.push(Effect::Revert {
                command_id: self.command_id(CommandKind::Revert, &h),
                to: self.from.get(&h).cloned().flatten(),
                host: h,
            });
        }
        out.extend(self.advance(now));
        out
    }

    fn finish(&mut self, now: i64, end: Phase) {
        self.note(now, format!("finished: {}", end.name()));
        self.phase = end;
        self.finished_ms = Some(now);
    }

    /// Commands in flight, to re-send after a coordinator restart or a
    /// lost session (agents answer repeated commands from their journal).
    /// A rollout stored before its start took effect is started now.
    pub fn resume(&mut self, now: i64) -> Vec<Effect> {
        // Stored as running but finished (a blue/green switch-back cut off
        // by a crash): nothing to carry on.
        if self.phase.is_terminal() {
            return Vec::new();
        }
        if matches!(self.phase, Phase::Staging)
            && self.hosts.values().all(|p| matches!(p, HostPhase::Pending))
        {
            return self.step(Event::Start, now);
        }
        // While the coordinator was down nobody heard the hosts' answers;
        // they wait in the agents' journals and come back with their
        // sessions. So the time it was down does not count against them:
        // deadlines of what is in flight run again from now (else a
        // restart after `healthy_deadline` would fail every host being
        // swapped and roll back a healthy rollout before any reconnected).
        let mut in_flight = 0;
        for p in self.hosts.values_mut() {
            if let HostPhase::Activating { since_ms } | HostPhase::Stopping { since_ms } = p {
                *since_ms = now;
                in_flight += 1;
            }
        }
        if self.rollback_since_ms.is_some() {
            self.rollback_since_ms = Some(now);
        }
        self.progress_since_ms = now;
        self.note(
            now,
            format!("resumed after a coordinator restart; deadlines of {in_flight} host(s) in flight run from now"),
        );
        let mut out = self.in_flight();
        // Cut off mid-switch: traffic may be on either group; running the
        // switch again puts it where this rollout was sending it.
        out.extend(self.switch_effect());
        out
    }

    /// The switch this rollout is running, if it is switching.
    pub fn switch_effect(&self) -> Option<Effect> {
        let Phase::Switching { batch } = self.phase else {
            return None;
        };
        Some(Effect::Switch {
            live: self.group.clone().unwrap_or_default(),
            old: self.old_group.clone(),
            hosts: self.batches.get(batch).cloned().unwrap_or_default(),
        })
    }
}
