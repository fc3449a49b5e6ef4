//! The rollout engine: a pure state machine. [`Rollout::step`] takes an
//! event and the time and returns the effects (commands to hosts) for a
//! runner to carry out; it does no I/O, so it is tested with simulated
//! agents and made-up clocks, and the same events always give the same
//! commands. [`plan`] computes the batches a spec makes against the fleet.
//!
//! Strategies here: `rolling` (stage everywhere in parallel, then activate
//! batch by batch) and `recreate` (stage everywhere, stop the old release
//! everywhere, then start the new one everywhere: two versions never serve
//! at once; agents keep the listening sockets, so clients queue meanwhile). Automatic
//! rollback on: more failed hosts than `max_failed`, a host not healthy
//! within `healthy_deadline`, a done host whose health degrades during the
//! rollout, `progress_deadline` passed. Rollback re-activates, in parallel,
//! the release each changed host ran before (already staged: no download).

use std::collections::BTreeMap;

use cutover_common::deploy::{DeploySpec, StrategyKind};
use cutover_common::labels::{Labels, Selector};
use serde::{Deserialize, Serialize};

/// A host as the planner sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub host: String,
    pub labels: Labels,
    pub ready: bool,
    /// The release of this service the host runs now, if any.
    pub active_release: Option<String>,
}

/// What happens after a batch (canary steps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StepPolicy {
    /// Wait this long after the batch is healthy (None: no pause).
    pub pause_ms: Option<i64>,
    /// Wait for `cutover promote`.
    pub manual: bool,
    /// Compare the canaries with the baseline before going on.
    pub analysis: bool,
    /// Blue/green: run the switch command once this batch is healthy.
    #[serde(default)]
    pub switch: bool,
}

/// The batches a spec makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub batches: Vec<Vec<String>>,
    /// One per batch.
    #[serde(default)]
    pub steps: Vec<StepPolicy>,
    /// Matching hosts left out, with why.
    pub skipped: Vec<(String, String)>,
    /// The release each target runs now.
    pub from: BTreeMap<String, Option<String>>,
    pub max_failed: usize,
    /// Blue/green: the group deployed to, and the group serving now.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub old_group: Option<String>,
}

/// Why a spec cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("targets.selector `{selector}` matches no ready host{}", if .not_ready.is_empty() { String::new() } else { format!(" ({} matching but not ready: {})", .not_ready.len(), .not_ready.join(", ")) })]
    NoHosts {
        selector: String,
        not_ready: Vec<String>,
    },
    #[error("no ready host of group `{group}` (label {label}={group}) among the targets")]
    EmptyGroup { label: String, group: String },
}

/// Computes the batches of a rollout of `spec` over `fleet`.
pub fn plan(spec: &DeploySpec, fleet: &[Candidate]) -> Result<Plan, PlanError> {
    plan_with(spec, fleet, None)
}

/// [`plan`], knowing which blue/green group serves now.
pub fn plan_with(
    spec: &DeploySpec,
    fleet: &[Candidate],
    live_group: Option<&str>,
) -> Result<Plan, PlanError> {
    let selector = Selector::parse(&spec.targets.selector).unwrap_or_default();
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for c in fleet {
        if !selector.matches(&c.labels) {
            continue;
        }
        if let Some(env) = &spec.targets.environment
            && c.labels.get("environment") != Some(env)
        {
            continue;
        }
        if c.ready {
            targets.push(c.clone());
        } else {
            skipped.push((c.host.clone(), "not ready".to_string()));
        }
    }
    targets.sort_by(|a, b| a.host.cmp(&b.host));
    if targets.is_empty() {
        return Err(PlanError::NoHosts {
            selector: spec.targets.selector.clone(),
            not_ready: skipped.into_iter().map(|(h, _)| h).collect(),
        });
    }
    let n = targets.len();
    let hosts: Vec<String> = targets.iter().map(|t| t.host.clone()).collect();
    let (batches, steps): (Vec<Vec<String>>, Vec<StepPolicy>) = match spec.strategy.kind {
        StrategyKind::Rolling | StrategyKind::Recreate => {
            let size = if spec.strategy.kind == StrategyKind::Recreate {
                n
            } else {
                let mut s = spec.strategy.max_unavailable.of(n).max(1);
                if let Some(p) = spec.strategy.max_parallel {
                    s = s.min(p as usize).max(1);
                }
                s
            };
            let b: Vec<Vec<String>> = hosts.chunks(size).map(|c| c.to_vec()).collect();
            let st = vec![StepPolicy::default(); b.len()];
            (b, st)
        }
        StrategyKind::Canary => {
            // Steps are cumulative shares of the targets; each batch is what
            // a step adds. A last step short of 100% gets the rest added.
            let mut batches = Vec::new();
            let mut steps = Vec::new();
            let mut done = 0;
            for step in &spec.strategy.steps {
                let upto = step.hosts.of(n).max(done + 1).min(n);
                if upto <= done {
                    continue;
                }
                batches.push(hosts[done..upto].to_vec());
                steps.push(StepPolicy {
                    pause_ms: step
                        .pause
                        .as_deref()
                        .filter(|p| *p != "manual")
                        .and_then(|p| humantime::parse_duration(p).ok())
                        .map(|d| d.as_millis() as i64),
                    manual: step.pause.as_deref() == Some("manual"),
                    analysis: step.analysis,
                    switch: false,
                });
                done = upto;
            }
            if done < n {
                batches.push(hosts[done..].to_vec());
                steps.push(StepPolicy::default());
            }
            (batches, steps)
        }
        StrategyKind::BlueGreen => {
            let g = &spec.strategy.groups;
            let idle = if live_group == Some(g[0].as_str()) {
                g[1].clone()
            } else {
                g[0].clone()
            };
            let label = &spec.strategy.group_label;
            let members: Vec<String> = targets
                .iter()
                .filter(|t| t.labels.get(label) == Some(&idle))
                .map(|t| t.host.clone())
                .collect();
            if members.is_empty() {
                return Err(PlanError::EmptyGroup {
                    label: label.clone(),
                    group: idle,
                });
            }
            let from = targets
                .into_iter()
                .filter(|t| members.contains(&t.host))
                .map(|t| (t.host, t.active_release))
                .collect();
            return Ok(Plan {
                max_failed: spec.rollback.max_failed.floor_of(members.len()),
                batches: vec![members],
                steps: vec![StepPolicy {
                    switch: true,
                    ..Default::default()
                }],
                skipped,
                from,
                group: Some(idle),
                old_group: live_group.map(str::to_string),
            });
        }
    };
    Ok(Plan {
        batches,
        steps,
        skipped,
        from: targets
            .into_iter()
            .map(|t| (t.host, t.active_release))
            .collect(),
        max_failed: spec.rollback.max_failed.floor_of(n),
        group: None,
        old_group: None,
    })
}

/// Where one host is in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum HostPhase {
    /// Not touched yet.
    Pending,
    /// `Stage` sent.
    Staging,
    /// Staged; waits for its batch.
    Staged,
    /// Recreate: `Stop` (keeping the sockets) sent at `since_ms`.
    Stopping { since_ms: i64 },
    /// Recreate: the old release is stopped; waits for the new one.
    Stopped,
    /// `Activate` sent at `since_ms`.
    Activating { since_ms: i64 },
    /// Runs the new release.
    Done { at_ms: i64 },
    /// Could not stage or activate: still runs what it ran before.
    Failed { reason: String },
    /// Sent back to the release it ran before.
    RollingBack,
    /// Back on the release it ran before.
    RolledBack,
    /// The rollback itself failed.
    RollbackFailed { reason: String },
}

impl HostPhase {
    fn is_failed(&self) -> bool {
        matches!(self, HostPhase::Failed { .. })
    }
}

/// Where the rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Staging on every target in parallel.
    Staging,
    /// Recreate: stopping the old release on every target.
    Stopping,
    /// Activating batch `batch` (0-based).
    Activating { batch: usize },
    /// Canary: batch `batch` is healthy; waiting out its pause, its
    /// analysis, or an operator's promote.
    Waiting {
        batch: usize,
        /// When the pause ends; `None` waits for `cutover promote`.
        until_ms: Option<i64>,
        /// Inconclusive analyses so far.
        retries: u32,
    },
    /// Blue/green: the new group is healthy; the switch command runs.
    Switching { batch: usize },
    /// Sending changed hosts back to their previous release.
    RollingBack { reason: String, aborted: bool },
    /// Every target runs the new release.
    Succeeded,
    /// Rolled back by policy or by an operator.
    RolledBack { reason: String },
    /// Aborted by an operator (and rolled back).
    Aborted { reason: String },
    /// Stopped without finishing (a rollback failed, or auto-rollback is off).
    Failed { reason: String },
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded
                | Phase::RolledBack { .. }
                | Phase::Aborted { .. }
                | Phase::Failed { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Phase::Staging => "staging",
            Phase::Stopping => "stopping",
            Phase::Activating { .. } => "activating",
            Phase::Waiting { .. } => "waiting",
            Phase::Switching { .. } => "switching",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack { .. } => "rolled_back",
            Phase::Aborted { .. } => "aborted",
            Phase::Failed { .. } => "failed",
        }
    }
}

/// Something that happens to a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Start,
    /// A host answered a command.
    Result {
        host: String,
        command_id: String,
        ok: bool,
        message: String,
    },
    /// A host that runs the new release reports it unhealthy.
    Unhealthy {
        host: String,
        status: String,
    },
    /// Time passes (deadlines).
    Tick,
    Pause,
    Resume,
    /// Operator abort: roll back and end as aborted.
    Abort,
    /// Operator rollback of the running rollout.
    Rollback,
    /// Operator: go on to the next canary step now.
    Promote,
    /// The verdict of the analysis the rollout asked for.
    Analysis {
        batch: usize,
        report: crate::analysis::Report,
    },
    /// The coordinator lost touch with a host (no heartbeat for
    /// host_timeout).
    Lost {
        host: String,
    },
    /// The blue/green switch command ran.
    Switched {
        ok: bool,
        detail: String,
    },
}

/// A command for a runner to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Stage {
        host: String,
        command_id: String,
    },
    Activate {
        host: String,
        command_id: String,
    },
    /// Stop the old release, keeping its listening sockets (recreate).
    Stop {
        host: String,
        command_id: String,
    },
    /// Back to `to` (a staged release), or stop the service when the host
    /// ran none before.
    Revert {
        host: String,
        command_id: String,
        to: Option<String>,
    },
}

impl Effect {
    pub fn host(&self) -> &str {
        match self {
            Effect::Stage { host, .. }
            | Effect::Activate { host, .. }
            | Effect::Stop { host, .. }
            | Effect::Revert { host, .. } => host,
        }
    }
    pub fn command_id(&self) -> &str {
        match self {
            Effect::Stage { command_id, .. }
            | Effect::Activate { command_id, .. }
            | Effect::Stop { command_id, .. }
            | Effect::Revert { command_id, .. } => command_id,
        }
    }
}

/// One line of a rollout's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub at_ms: i64,
    pub message: String,
}

/// A memo of host positions, both ways (the set of hosts never changes
/// once planned); never part of a rollout's identity.
#[derive(Debug, Clone, Default)]
pub struct IndexCache(std::sync::OnceLock<(std::collections::HashMap<String, usize>, Vec<String>)>);

impl PartialEq for IndexCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

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
    /// The progress deadline counts from here: the last batch start.
    #[serde(default)]
    pub progress_since_ms: i64,
    /// When the rollback started (reverts get `healthy_deadline` too).
    #[serde(default)]
    pub rollback_since_ms: Option<i64>,
    /// A batch held back by a pause, started on resume.
    #[serde(default)]
    pub held_batch: Option<usize>,
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
            started_ms: now_ms,
            finished_ms: None,
            epoch,
            notes: Vec::new(),
            degraded: Vec::new(),
            steps,
            analysis_wanted: None,
            verdicts: Vec::new(),
            group: plan.group.clone(),
            old_group: plan.old_group.clone(),
            live_group_after: None,
            progress_since_ms: now_ms,
            index_cache: IndexCache::default(),
            rollback_since_ms: None,
            held_batch: None,
        }
    }

    fn positions(&self) -> &(std::collections::HashMap<String, usize>, Vec<String>) {
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

    fn index(&self, host: &str) -> usize {
        self.positions().0.get(host).copied().unwrap_or(usize::MAX)
    }

    /// The command id of `kind` for `host`: deterministic, so a resumed
    /// rollout re-sends the very same commands and agents answer from their
    /// journal instead of acting twice.
    pub fn command_id(&self, kind: &str, host: &str) -> String {
        format!("{}-{kind}-{}", self.id, self.index(host))
    }

    fn host_of(&self, command_id: &str) -> Option<(&'static str, String)> {
        let rest = command_id.strip_prefix(&format!("{}-", self.id))?;
        let (kind, idx) = rest.rsplit_once('-')?;
        let idx: usize = idx.parse().ok()?;
        let host = self.positions().1.get(idx)?.clone();
        let kind = match kind {
            "stage" => "stage",
            "activate" => "activate",
            "stop" => "stop",
            "revert" => "revert",
            _ => return None,
        };
        Some((kind, host))
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
        match &self.phase {
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
                if self.paused && done == hosts.len() {
                    return Some("paused by an operator: `cutover resume` to go on".into());
                }
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
                        command_id: self.command_id("stage", &h),
                        host: h,
                    });
                }
            }
            Event::Result {
                host,
                command_id,
                ok,
                message,
            } => self.record_result(host, command_id, ok, message, now),
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
                    let waiting = matches!(self.phase, Phase::Waiting { .. }) || self.paused;
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
                } => {
                    self.record_result(host, command_id, ok, message, now);
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

    /// Records one command result on its host (without advancing).
    fn record_result(
        &mut self,
        host: String,
        command_id: String,
        ok: bool,
        message: String,
        now: i64,
    ) {
        let Some((kind, h)) = self.host_of(&command_id) else {
            return;
        };
        if h != host {
            return; // a host answering for another host's command
        }
        let cur = self.hosts.get(&host).cloned();
        match (kind, cur) {
            ("stage", Some(HostPhase::Staging)) => {
                let p = if ok {
                    HostPhase::Staged
                } else {
                    self.note(now, format!("{host}: staging failed: {message}"));
                    HostPhase::Failed { reason: message }
                };
                self.hosts.insert(host, p);
            }
            ("stop", Some(HostPhase::Stopping { .. })) => {
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
            ("activate", Some(HostPhase::Activating { .. })) => {
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
            ("activate", Some(HostPhase::RollingBack)) if !ok => {
                // The swap failed on its own: the host never left
                // its old release. The revert (queued behind it)
                // will answer too.
            }
            ("revert", Some(HostPhase::RollingBack)) => {
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
                if self.hosts.values().any(|p| matches!(p, HostPhase::Staging)) {
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
                let in_flight = self.batches[batch]
                    .iter()
                    .any(|h| matches!(self.hosts[h], HostPhase::Activating { .. }));
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
                    return Vec::new();
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
            .filter(|(h, p)| {
                matches!(p, HostPhase::Staged) && self.from.get(*h).is_some_and(Option::is_some)
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
                    command_id: self.command_id("stop", &h),
                    host: h,
                }
            })
            .collect()
    }

    fn start_batch(&mut self, batch: usize, now: i64) -> Vec<Effect> {
        if self.paused && batch < self.batches.len() {
            self.held_batch = Some(batch);
            self.note(
                now,
                format!("batch {} held: the rollout is paused", batch + 1),
            );
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
                        command_id: self.command_id("activate", &h),
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
                command_id: self.command_id("revert", &h),
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
        if matches!(self.phase, Phase::Staging)
            && self.hosts.values().all(|p| matches!(p, HostPhase::Pending))
        {
            return self.step(Event::Start, now);
        }
        self.in_flight()
    }

    /// Commands in flight (see [`Rollout::resume`]).
    pub fn in_flight(&self) -> Vec<Effect> {
        self.hosts
            .iter()
            .filter_map(|(h, p)| match p {
                HostPhase::Staging => Some(Effect::Stage {
                    host: h.clone(),
                    command_id: self.command_id("stage", h),
                }),
                HostPhase::Activating { .. } => Some(Effect::Activate {
                    host: h.clone(),
                    command_id: self.command_id("activate", h),
                }),
                HostPhase::Stopping { .. } => Some(Effect::Stop {
                    host: h.clone(),
                    command_id: self.command_id("stop", h),
                }),
                HostPhase::RollingBack => Some(Effect::Revert {
                    host: h.clone(),
                    command_id: self.command_id("revert", h),
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
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_common::labels;

    /// The host of `e` answered it successfully.
    fn ok(e: &Effect) -> Event {
        Event::Result {
            host: e.host().into(),
            command_id: e.command_id().into(),
            ok: true,
            message: String::new(),
        }
    }

    fn spec(extra: &str) -> DeploySpec {
        DeploySpec::parse(
            &format!(
                "service = \"web\"\n[run]\ncommand = [\"bin/web\"]\n[targets]\nselector = \"role=web\"\n{extra}"
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn fleet(n: usize) -> Vec<Candidate> {
        (1..=n)
            .map(|i| Candidate {
                host: format!("web-{i}"),
                labels: labels::parse("role=web").unwrap(),
                ready: true,
                active_release: Some("v1".into()),
            })
            .collect()
    }

    fn rollout(extra: &str, n: usize) -> Rollout {
        let s = spec(extra);
        let p = plan(&s, &fleet(n)).unwrap();
        Rollout::new("d1", &s, "2", "v2", p, 1, 0)
    }

    /// Drives a rollout with simulated agents: `answer` decides each
    /// command's outcome. Returns every effect in order and the most hosts
    /// activating at once.
    fn drive(r: &mut Rollout, mut answer: impl FnMut(&Effect) -> bool) -> (Vec<Effect>, usize) {
        let mut now = 0;
        let mut queue: Vec<Effect> = r.step(Event::Start, now);
        let mut all = queue.clone();
        let mut max_active = 0;
        let mut last_batch = 0;
        while !queue.is_empty() {
            let e = queue.remove(0);
            now += 10;
            // Steps never go backwards.
            if let Some(b) = r.current_batch() {
                assert!(b >= last_batch, "went back from batch {last_batch} to {b}");
                last_batch = b;
            }
            let active = r
                .hosts
                .values()
                .filter(|p| matches!(p, HostPhase::Activating { .. }))
                .count();
            max_active = max_active.max(active);
            let ok = answer(&e);
            let more = r.step(
                Event::Result {
                    host: e.host().into(),
                    command_id: e.command_id().into(),
                    ok,
                    message: if ok { "ok".into() } else { "boom".into() },
                },
                now,
            );
            all.extend(more.clone());
            queue.extend(more);
        }
        (all, max_active)
    }

    #[test]
    fn every_running_phase_counts_as_active_in_the_store() {
        let running = [
            Phase::Staging,
            Phase::Stopping,
            Phase::Activating { batch: 0 },
            Phase::Waiting {
                batch: 0,
                until_ms: None,
                retries: 0,
            },
            Phase::Switching { batch: 0 },
            Phase::RollingBack {
                reason: String::new(),
                aborted: false,
            },
        ];
        for p in running {
            assert!(!p.is_terminal());
            assert!(
                crate::store::ACTIVE_PHASES.contains(&p.name()),
                "{} missing from ACTIVE_PHASES: a restart would not resume it",
                p.name()
            );
        }
    }

    #[test]
    fn recreate_stops_the_old_release_everywhere_before_starting_the_new_one() {
        let mut r = rollout("[strategy]\nkind = \"recreate\"\n", 4);
        let (effects, max_active) = drive(&mut r, |_| true);
        assert_eq!(r.phase, Phase::Succeeded);
        assert_eq!(max_active, 4, "one batch of everything");
        let first_activate = effects
            .iter()
            .position(|e| matches!(e, Effect::Activate { .. }))
            .unwrap();
        let stops: Vec<usize> = effects
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Effect::Stop { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(stops.len(), 4, "{effects:?}");
        assert!(
            stops.iter().all(|i| *i < first_activate),
            "every stop before any start: {effects:?}"
        );
    }

    #[test]
    fn a_failed_recreate_starts_the_old_release_again_on_every_host() {
        let mut r = rollout("[strategy]\nkind = \"recreate\"\n", 3);
        let (effects, _) = drive(&mut r, |e| {
            !(matches!(e, Effect::Activate { .. }) && e.host() == "web-2")
        });
        assert!(matches!(r.phase, Phase::RolledBack { .. }), "{:?}", r.phase);
        let mut reverted: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Revert { host, to, .. } => {
                    assert_eq!(to.as_deref(), Some("v1"));
                    Some(host.as_str())
                }
                _ => None,
            })
            .collect();
        reverted.sort();
        // web-2's failed start left it stopped too: it is started again.
        assert_eq!(reverted, vec!["web-1", "web-2", "web-3"]);
    }

    #[test]
    fn a_paused_recreate_stops_nothing_until_resumed() {
        let mut r = rollout("[strategy]\nkind = \"recreate\"\n", 2);
        let stages = r.step(Event::Start, 0);
        r.step(Event::Pause, 1);
        let mut out = Vec::new();
        for e in &stages {
            out.extend(r.step(ok(e), 2));
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(r.phase, Phase::Stopping);
        let stops = r.step(Event::Resume, 3);
        assert_eq!(stops.len(), 2);
        assert!(stops.iter().all(|e| matches!(e, Effect::Stop { .. })));
    }

    #[test]
    fn rolling_six_hosts_two_at_a_time_makes_three_batches_and_succeeds() {
        let mut r = rollout("[strategy]\nmax_unavailable = 2\n", 6);
        assert_eq!(r.batches.len(), 3);
        let (effects, max_active) = drive(&mut r, |_| true);
        assert_eq!(r.phase, Phase::Succeeded);
        assert!(
            max_active <= 2,
            "never more than max_unavailable out of service"
        );
        let stages = effects
            .iter()
            .filter(|e| matches!(e, Effect::Stage { .. }))
            .count();
        let activates = effects
            .iter()
            .filter(|e| matches!(e, Effect::Activate { .. }))
            .count();
        assert_eq!((stages, activates), (6, 6));
        // Staging everywhere comes before any activation.
        let first_activate = effects
            .iter()
            .position(|e| matches!(e, Effect::Activate { .. }))
            .unwrap();
        assert!(
            effects[..first_activate]
                .iter()
                .all(|e| matches!(e, Effect::Stage { .. }))
        );
    }

    #[test]
    fn a_failed_swap_over_max_failed_rolls_back_every_changed_host_to_its_previous_release() {
        let mut r = rollout("[strategy]\nmax_unavailable = 2\n", 6);
        // web-3 (second batch) fails its swap.
        let (effects, _) = drive(&mut r, |e| {
            !(matches!(e, Effect::Activate { .. }) && e.host() == "web-3")
        });
        assert!(matches!(r.phase, Phase::RolledBack { .. }), "{:?}", r.phase);
        let reverted: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Revert { host, to, .. } => {
                    assert_eq!(to.as_deref(), Some("v1"), "back to what it ran before");
                    Some(host.as_str())
                }
                _ => None,
            })
            .collect();
        // web-1 and web-2 changed; web-4 was in flight with web-3.
        assert_eq!(reverted, vec!["web-1", "web-2", "web-4"]);
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::Activate { host, .. } if host == "web-5")),
            "no batch after the failure"
        );
        assert_eq!(
            r.hosts["web-3"],
            HostPhase::Failed {
                reason: "boom".into()
            }
        );
    }

    #[test]
    fn failures_within_max_failed_let_the_rollout_finish() {
        let mut r = rollout(
            "[strategy]\nmax_unavailable = 2\n[rollback]\nmax_failed = 1\n",
            6,
        );
        drive(&mut r, |e| {
            !(matches!(e, Effect::Activate { .. }) && e.host() == "web-3")
        });
        assert_eq!(r.phase, Phase::Succeeded);
        assert_eq!(r.summary(), "5/6 on 2, 1 failed");
    }

    #[test]
    fn a_host_not_healthy_within_the_deadline_fails_and_triggers_rollback() {
        let mut r = rollout(
            "[swap]\nmin_ready = \"1s\"\n[strategy]\nmax_unavailable = 1\nhealthy_deadline = \"30s\"\n",
            2,
        );
        let mut q = r.step(Event::Start, 0);
        for e in std::mem::take(&mut q) {
            q.extend(r.step(ok(&e), 1));
        }
        assert!(matches!(q.as_slice(), [Effect::Activate { .. }]));
        assert!(r.step(Event::Tick, 20_000).is_empty());
        let out = r.step(Event::Tick, 40_000);
        assert!(
            matches!(out.as_slice(), [Effect::Revert { host, .. }] if host == "web-1"),
            "{out:?}"
        );
        assert!(matches!(r.phase, Phase::RollingBack { .. }));
    }

    #[test]
    fn a_done_host_whose_health_degrades_is_reverted_with_the_others() {
        let mut r = rollout("[strategy]\nmax_unavailable = 1\n", 3);
        let mut q = r.step(Event::Start, 0);
        for e in std::mem::take(&mut q) {
            q.extend(r.step(ok(&e), 1));
        }
        let a = q.remove(0);
        let next = r.step(ok(&a), 2);
        assert!(matches!(next.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"));
        // web-1 took the new release, then reports itself unhealthy.
        let out = r.step(
            Event::Unhealthy {
                host: "web-1".into(),
                status: "unhealthy".into(),
            },
            3,
        );
        let reverted: Vec<&str> = out
            .iter()
            .filter(|&e| matches!(e, Effect::Revert { .. }))
            .map(|e| e.host())
            .collect();
        assert_eq!(
            reverted,
            vec!["web-1", "web-2"],
            "the degraded host and the one in flight"
        );
        assert!(matches!(r.phase, Phase::RollingBack { .. }));
    }

    #[test]
    fn a_pause_on_the_last_step_bakes_the_whole_fleet_and_an_unhealthy_host_reverts_it() {
        let bake =
            "[strategy]\nkind = \"canary\"\nsteps = [ { hosts = \"100%\", pause = \"1m\" } ]\n";
        // Nothing degrades: the rollout succeeds once the bake is over.
        let mut r = rollout(bake, 3);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        assert!(
            matches!(
                r.phase,
                Phase::Waiting {
                    batch: 0,
                    until_ms: Some(60_001),
                    ..
                }
            ),
            "{:?}",
            r.phase
        );
        assert!(r.step(Event::Tick, 30_000).is_empty());
        assert!(matches!(r.phase, Phase::Waiting { .. }), "still baking");
        r.step(Event::Tick, 61_000);
        assert_eq!(r.phase, Phase::Succeeded);
        assert!(r.verdicts.is_empty(), "no analysis without a baseline");

        // A host turns unhealthy during the bake: every host is reverted.
        let mut r = rollout(bake, 3);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        let out = r.step(
            Event::Unhealthy {
                host: "web-2".into(),
                status: "unhealthy".into(),
            },
            20_000,
        );
        let mut reverted: Vec<&str> = out
            .iter()
            .filter(|&e| matches!(e, Effect::Revert { .. }))
            .map(|e| e.host())
            .collect();
        reverted.sort();
        assert_eq!(reverted, vec!["web-1", "web-2", "web-3"]);
        assert!(matches!(r.phase, Phase::RollingBack { .. }));
    }

    #[test]
    fn results_applied_together_end_where_results_applied_one_by_one_end() {
        // Some stagings fail (max_failed tolerates one), the rest go on.
        let extra = "[strategy]\nmax_unavailable = 2\n[rollback]\nmax_failed = 1\n";
        let (mut one, mut all) = (rollout(extra, 6), rollout(extra, 6));
        let mut q1 = one.step(Event::Start, 0);
        let mut q2 = all.step(Event::Start, 0);
        let mut now = 1;
        while !q1.is_empty() || !q2.is_empty() {
            let answer = |e: &Effect| match ok(e) {
                Event::Result {
                    host,
                    command_id,
                    message,
                    ..
                } => Event::Result {
                    ok: host != "web-4",
                    host,
                    command_id,
                    message,
                },
                ev => ev,
            };
            let evs1: Vec<Event> = q1.drain(..).map(|e| answer(&e)).collect();
            let evs2: Vec<Event> = q2.drain(..).map(|e| answer(&e)).collect();
            for ev in evs1 {
                q1.extend(one.step(ev, now));
            }
            q2 = all.step_all(evs2, now);
            assert_eq!(
                q1.iter()
                    .map(|e| e.command_id().to_string())
                    .collect::<Vec<_>>(),
                q2.iter()
                    .map(|e| e.command_id().to_string())
                    .collect::<Vec<_>>(),
                "the same commands next"
            );
            assert_eq!(one.phase, all.phase);
            assert_eq!(one.hosts, all.hosts);
            now += 1;
        }
        assert_eq!(all.phase, Phase::Succeeded);
        assert!(matches!(all.hosts["web-4"], HostPhase::Failed { .. }));
    }

    #[test]
    fn the_progress_deadline_rolls_back() {
        let mut r = rollout("[strategy]\nprogress_deadline = \"5m\"\n", 1);
        r.step(Event::Start, 0);
        let out = r.step(Event::Tick, 301_000);
        assert!(out.is_empty(), "nothing had changed yet: nothing to revert");
        assert!(
            matches!(r.phase, Phase::RolledBack { ref reason } if reason.contains("progress deadline")),
            "{:?}",
            r.phase
        );
    }

    #[test]
    fn pause_holds_the_next_batch_and_resume_releases_it() {
        let mut r = rollout("[strategy]\nmax_unavailable = 1\n", 2);
        let mut q = r.step(Event::Start, 0);
        for e in std::mem::take(&mut q) {
            q.extend(r.step(ok(&e), 1));
        }
        r.step(Event::Pause, 2);
        let a = q.remove(0);
        let out = r.step(ok(&a), 3);
        assert!(out.is_empty(), "paused: no new batch");
        assert!(r.blocked_on(3).unwrap().contains("paused"));
        let out = r.step(Event::Resume, 4);
        assert!(matches!(out.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"));
    }

    #[test]
    fn abort_reverts_and_ends_as_aborted() {
        let mut r = rollout("[strategy]\nmax_unavailable = 1\n", 2);
        let mut q = r.step(Event::Start, 0);
        for e in std::mem::take(&mut q) {
            q.extend(r.step(ok(&e), 1));
        }
        let a = q.remove(0);
        r.step(ok(&a), 2);
        let out = r.step(Event::Abort, 3);
        for e in out {
            r.step(ok(&e), 4);
        }
        assert!(matches!(r.phase, Phase::Aborted { .. }), "{:?}", r.phase);
    }

    #[test]
    fn a_host_cannot_answer_for_another_and_unknown_commands_are_ignored() {
        let mut r = rollout("", 2);
        let q = r.step(Event::Start, 0);
        let before = r.clone();
        r.step(
            Event::Result {
                host: "web-2".into(),
                command_id: q[0].command_id().into(),
                ok: true,
                message: String::new(),
            },
            1,
        );
        r.step(
            Event::Result {
                host: "web-1".into(),
                command_id: "other-stage-0".into(),
                ok: true,
                message: String::new(),
            },
            1,
        );
        assert_eq!(r.hosts, before.hosts);
    }

    #[test]
    fn a_selector_matching_no_ready_host_is_a_plan_error_naming_them() {
        let s = spec("");
        let mut f = fleet(2);
        f.iter_mut().for_each(|c| c.ready = false);
        let e = plan(&s, &f).unwrap_err();
        assert!(
            e.to_string()
                .contains("matches no ready host (2 matching but not ready: web-1, web-2)"),
            "{e}"
        );
    }

    fn answer_all(r: &mut Rollout, effects: Vec<Effect>, now: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut q = effects;
        while !q.is_empty() {
            let e = q.remove(0);
            let more = r.step(ok(&e), now);
            out.extend(more.clone());
            q.extend(more);
        }
        out
    }

    fn report(v: crate::analysis::Verdict) -> crate::analysis::Report {
        crate::analysis::Report {
            verdict: v,
            metrics: vec![],
        }
    }

    const CANARY: &str = "[strategy]\nkind = \"canary\"\nsteps = [ { hosts = \"25%\", pause = \"1m\", analysis = true }, { hosts = \"50%\", pause = \"manual\" }, { hosts = \"100%\" } ]\n";

    #[test]
    fn a_canary_bakes_is_analysed_waits_for_promote_and_finishes() {
        let mut r = rollout(CANARY, 4);
        assert_eq!(
            r.batches,
            vec![
                vec!["web-1".to_string()],
                vec!["web-2".into()],
                vec!["web-3".into(), "web-4".into()]
            ]
        );
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        assert!(
            matches!(
                r.phase,
                Phase::Waiting {
                    batch: 0,
                    until_ms: Some(60_001),
                    ..
                }
            ),
            "{:?}",
            r.phase
        );
        assert!(r.step(Event::Tick, 30_000).is_empty());
        assert!(r.blocked_on(30_000).unwrap().contains("waiting 30s more"));
        r.step(Event::Tick, 61_000);
        assert_eq!(r.analysis_wanted, Some(0));
        let (canary, baseline) = r.analysis_groups(0);
        assert_eq!((canary, baseline.len()), (vec!["web-1".to_string()], 3));
        let e = r.step(
            Event::Analysis {
                batch: 0,
                report: report(crate::analysis::Verdict::Pass),
            },
            61_001,
        );
        assert!(matches!(e.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"));
        answer_all(&mut r, e, 62_000);
        assert!(matches!(
            r.phase,
            Phase::Waiting {
                batch: 1,
                until_ms: None,
                ..
            }
        ));
        // Waiting for an operator is not "stuck": no progress-deadline rollback.
        assert!(r.step(Event::Tick, 10_000_000).is_empty());
        assert!(matches!(r.phase, Phase::Waiting { .. }));
        let e = r.step(Event::Promote, 10_000_001);
        assert_eq!(e.len(), 2);
        answer_all(&mut r, e, 10_000_002);
        assert_eq!(r.phase, Phase::Succeeded);
        assert_eq!(r.verdicts.len(), 1);
    }

    #[test]
    fn a_failed_canary_analysis_rolls_the_canaries_back() {
        let mut r = rollout(CANARY, 4);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        r.step(Event::Tick, 61_000);
        let e = r.step(
            Event::Analysis {
                batch: 0,
                report: report(crate::analysis::Verdict::Fail),
            },
            61_001,
        );
        assert!(matches!(e.as_slice(), [Effect::Revert { host, .. }] if host == "web-1"));
        answer_all(&mut r, e, 61_002);
        assert!(
            matches!(r.phase, Phase::RolledBack { ref reason } if reason.contains("canary analysis failed")),
            "{:?}",
            r.phase
        );
    }

    #[test]
    fn inconclusive_analysis_waits_then_asks_an_operator_and_never_passes_or_fails() {
        let mut r = rollout(CANARY, 4);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        let mut now = 61_000;
        for _ in 0..3 {
            r.step(Event::Tick, now);
            assert_eq!(r.analysis_wanted, Some(0));
            let e = r.step(
                Event::Analysis {
                    batch: 0,
                    report: report(crate::analysis::Verdict::Inconclusive),
                },
                now + 1,
            );
            assert!(e.is_empty(), "inconclusive never moves on");
            now += 120_000;
        }
        assert!(
            matches!(
                r.phase,
                Phase::Waiting {
                    batch: 0,
                    until_ms: None,
                    retries: 3
                }
            ),
            "{:?}",
            r.phase
        );
        assert!(
            r.hosts
                .values()
                .filter(|p| matches!(p, HostPhase::Done { .. }))
                .count()
                == 1
        );
    }

    fn colored(n: usize) -> Vec<Candidate> {
        (1..=n)
            .map(|i| Candidate {
                host: format!("web-{i}"),
                labels: labels::parse(&format!(
                    "role=web,color={}",
                    if i % 2 == 1 { "blue" } else { "green" }
                ))
                .unwrap(),
                ready: true,
                active_release: None,
            })
            .collect()
    }

    const BG: &str = "[strategy]\nkind = \"blue_green\"\nswitch = { command = [\"/bin/true\"] }\n";

    #[test]
    fn blue_green_deploys_to_the_idle_group_then_switches() {
        let s = spec(BG);
        let p = plan_with(&s, &colored(4), Some("blue")).unwrap();
        assert_eq!(p.batches, vec![vec!["web-2".to_string(), "web-4".into()]]);
        assert_eq!(
            (p.group.as_deref(), p.old_group.as_deref()),
            (Some("green"), Some("blue"))
        );
        let mut r = Rollout::new("d1", &s, "2", "v2", p, 1, 0);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        assert!(
            matches!(r.phase, Phase::Switching { batch: 0 }),
            "{:?}",
            r.phase
        );
        r.step(
            Event::Switched {
                ok: true,
                detail: "exit 0".into(),
            },
            2,
        );
        assert_eq!(r.phase, Phase::Succeeded);
        assert_eq!(r.live_group_after.as_deref(), Some("green"));
    }

    #[test]
    fn a_failed_switch_leaves_both_groups_running_and_fails() {
        let s = spec(BG);
        let mut r = Rollout::new(
            "d1",
            &s,
            "2",
            "v2",
            plan_with(&s, &colored(4), None).unwrap(),
            1,
            0,
        );
        assert_eq!(
            r.group.as_deref(),
            Some("blue"),
            "no live group yet: the first group"
        );
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        let e = r.step(
            Event::Switched {
                ok: false,
                detail: "exit 1".into(),
            },
            2,
        );
        assert!(e.is_empty(), "traffic may have moved: nothing is stopped");
        assert!(
            matches!(r.phase, Phase::Failed { ref reason } if reason.contains("switch command failed"))
        );
        assert_eq!(r.live_group_after, None);
    }

    #[test]
    fn a_pause_holds_the_next_canary_step_until_resume() {
        let mut r = rollout(CANARY, 4);
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        r.step(Event::Pause, 2);
        r.step(Event::Tick, 61_000);
        let e = r.step(
            Event::Analysis {
                batch: 0,
                report: report(crate::analysis::Verdict::Pass),
            },
            61_001,
        );
        assert!(e.is_empty(), "paused: the next step waits");
        let e = r.step(Event::Resume, 61_002);
        assert!(matches!(e.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"));
    }

    #[test]
    fn a_host_that_never_answers_its_rollback_ends_the_rollout_as_failed() {
        let mut r = rollout(
            "[strategy]\nmax_unavailable = 1\nhealthy_deadline = \"30s\"\n",
            2,
        );
        let mut q = r.step(Event::Start, 0);
        for e in std::mem::take(&mut q) {
            q.extend(r.step(ok(&e), 1));
        }
        // web-1's swap is in flight when the operator aborts.
        let out = r.step(Event::Abort, 2);
        assert_eq!(out.len(), 1);
        r.step(Event::Tick, 20_000);
        assert!(matches!(r.phase, Phase::RollingBack { .. }));
        r.step(Event::Tick, 40_000);
        assert!(
            matches!(r.phase, Phase::Failed { ref reason } if reason.contains("rollback failed on web-1")),
            "{:?}",
            r.phase
        );
    }

    #[test]
    fn a_rollout_stored_before_it_started_starts_on_resume() {
        let mut r = rollout("", 2);
        let e = r.resume(5);
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|x| matches!(x, Effect::Stage { .. })));
    }

    #[test]
    fn long_canary_pauses_do_not_trip_the_progress_deadline() {
        let mut r = rollout(
            "[strategy]\nkind = \"canary\"\nprogress_deadline = \"5m\"\nsteps = [ { hosts = 1, pause = \"1h\" }, { hosts = \"100%\" } ]\n",
            2,
        );
        let e = r.step(Event::Start, 0);
        answer_all(&mut r, e, 1);
        assert!(r.step(Event::Tick, 1_800_000).is_empty());
        assert!(matches!(r.phase, Phase::Waiting { .. }), "{:?}", r.phase);
        let e = r.step(Event::Tick, 3_600_002);
        assert!(matches!(e.as_slice(), [Effect::Activate { .. }]), "{e:?}");
    }

    /// A small deterministic generator for the property checks below.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn property_every_rollout_ends_terminal_within_max_unavailable_and_rollbacks_restore_every_changed_host()
     {
        for seed0 in 1..300u64 {
            let mut seed = seed0 * 7919;
            let n = 1 + (xorshift(&mut seed) % 9) as usize;
            let mu = 1 + (xorshift(&mut seed) % 4) as u32;
            let mf = (xorshift(&mut seed) % 3) as u32;
            let fail_rate = xorshift(&mut seed) % 4; // 0..3 in 10
            let kind = if seed0 % 3 == 0 {
                "recreate"
            } else {
                "rolling"
            };
            let text = format!(
                "[strategy]\nkind = \"{kind}\"\nmax_unavailable = {mu}\n[rollback]\nmax_failed = {mf}\n"
            );
            let mut r = rollout(&text, n);
            let mut s2 = seed;
            let (effects, max_active) = drive(&mut r, |e| match e {
                Effect::Revert { .. } => true,
                _ => xorshift(&mut s2) % 10 >= fail_rate,
            });
            assert!(r.phase.is_terminal(), "seed {seed0}: {:?}", r.phase);
            if kind == "rolling" {
                assert!(
                    max_active <= mu as usize,
                    "seed {seed0}: {max_active} > {mu}"
                );
            } else {
                // Recreate: no host starts the new release before every
                // host that was told to stop the old one was.
                let first_activate = effects
                    .iter()
                    .position(|e| matches!(e, Effect::Activate { .. }));
                let last_stop = effects
                    .iter()
                    .rposition(|e| matches!(e, Effect::Stop { .. }));
                if let (Some(a), Some(s)) = (first_activate, last_stop) {
                    assert!(s < a, "seed {seed0}: a stop after a start: {effects:?}");
                }
            }
            if matches!(r.phase, Phase::RolledBack { .. }) {
                for (h, p) in &r.hosts {
                    assert!(
                        !matches!(
                            p,
                            HostPhase::Done { .. }
                                | HostPhase::Activating { .. }
                                | HostPhase::Stopping { .. }
                                | HostPhase::Stopped
                        ),
                        "seed {seed0}: {h} left on the new release or stopped: {p:?}"
                    );
                }
                // Every host whose old release was stopped is started again.
                for e in &effects {
                    if let Effect::Stop { host, .. } = e {
                        assert!(
                            effects
                                .iter()
                                .any(|x| matches!(x, Effect::Revert { host: h, .. } if h == host)),
                            "seed {seed0}: {host} stopped and never started again"
                        );
                    }
                }
            }
            // Same events give the same commands.
            let mut again = rollout(&text, n);
            let mut s3 = seed;
            let (effects2, _) = drive(&mut again, |e| match e {
                Effect::Revert { .. } => true,
                _ => xorshift(&mut s3) % 10 >= fail_rate,
            });
            assert_eq!(effects, effects2, "seed {seed0}");
        }
    }
}
