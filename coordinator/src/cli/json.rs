//! What `-o json` prints about deployments, one schema for `status`,
//! `history`, `deploy`, `rollback` and `watch` (docs/cli-json.md): RFC 3339
//! times, `null` for what is not there, one name per concept (`phase`,
//! `created_by`, `created_at`), and no engine internals. Made from the
//! typed API (`DeploymentInfo.status`), never from `rollout_json`.

use cutover_proto::v1 as pb;
use serde::Serialize;

/// A deployment.
#[derive(Debug, Serialize)]
pub struct Deployment {
    pub id: String,
    pub service: String,
    pub version: String,
    /// `null` when the spec names none.
    pub environment: Option<String>,
    /// staging, stopping, activating, waiting, switching, rolling_back,
    /// succeeded, rolled_back, aborted, failed.
    pub phase: String,
    /// Why it rolled back, aborted or failed; `null` otherwise.
    pub reason: Option<String>,
    pub created_by: String,
    pub created_at: Option<String>,
    /// `null` while it runs.
    pub finished_at: Option<String>,
    /// The deployment this one undid (an operator's rollback).
    pub rollback_of: Option<String>,
    /// A blue/green switch back.
    pub switch_back: bool,
    /// "3/3 hosts on v2" and the like.
    pub summary: Option<String>,
    /// The revision of the state shown (watch resumes after it).
    pub revision: u64,
    /// Where it is, host by host (status, watch; not history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// A deployment's progress.
#[derive(Debug, Serialize)]
pub struct Progress {
    pub release_id: String,
    /// rolling, recreate, canary, blue_green.
    pub strategy: Option<String>,
    /// The batch under way, from 1; `null` when none is.
    pub batch: Option<u32>,
    pub batches: u32,
    pub paused: bool,
    /// What it waits for now; `null` when it is not waiting.
    pub waiting_for: Option<String>,
    /// The end of a bake; `null` otherwise.
    pub waiting_until: Option<String>,
    /// Blue/green: the group deployed to, the one serving before, and the
    /// one serving after it ended.
    pub group: Option<String>,
    pub old_group: Option<String>,
    pub live_group_after: Option<String>,
    pub hosts: Vec<Host>,
    pub analyses: Vec<Analysis>,
    pub notes: Vec<Note>,
}

/// One host of a deployment.
#[derive(Debug, Serialize)]
pub struct Host {
    pub host: String,
    /// Its batch, from 1.
    pub batch: u32,
    /// pending, staging, staged, stopping, stopped, activating, done,
    /// failed, skipped, rolling_back, rolled_back, rollback_failed.
    pub phase: String,
    pub reason: Option<String>,
}

/// A canary step's analysis.
#[derive(Debug, Serialize)]
pub struct Analysis {
    /// The step, from 1.
    pub step: u32,
    /// pass, fail, inconclusive.
    pub verdict: String,
    pub metrics: Vec<Metric>,
}

/// One metric of an analysis.
#[derive(Debug, Serialize)]
pub struct Metric {
    pub metric: String,
    pub verdict: String,
    pub canary: f64,
    pub baseline: f64,
    pub canary_samples: u64,
    pub baseline_samples: u64,
    pub p_value: Option<f64>,
    pub why: String,
}

/// A line of a deployment's story.
#[derive(Debug, Serialize)]
pub struct Note {
    pub at: Option<String>,
    pub message: String,
}

/// A value the API sends as `""` when it has none, as `-o json` shows
/// it: `null` (docs/cli-json.md).
pub(super) fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// RFC 3339 (UTC, milliseconds) of Unix ms; `None` for 0.
pub fn time_ms(ms: i64) -> Option<String> {
    crate::output::rfc3339(ms)
}

/// A protobuf time as `-o json` shows it (`null` when absent).
pub(super) fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    time_ms(super::deploy::ms_of(t))
}

/// An enum value's name without its prefix, in lower case.
fn enum_name(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_ascii_lowercase()
}

fn verdict(v: i32) -> String {
    pb::Verdict::try_from(v)
        .map(|v| enum_name(v.as_str_name(), "VERDICT_"))
        .unwrap_or_else(|_| "unknown".into())
}

impl Deployment {
    /// `with_progress`: hosts, notes and analyses too.
    pub fn of(
        d: &pb::DeploymentInfo,
        status: Option<&pb::DeploymentStatus>,
        with_progress: bool,
    ) -> Self {
        let created = time(&d.created_at).or_else(|| time_ms(d.created_at_ms));
        let finished = time(&d.finished_at).or_else(|| time_ms(d.finished_at_ms));
        Deployment {
            id: d.id.clone(),
            service: d.service.clone(),
            version: d.version.clone(),
            environment: some(&d.environment),
            phase: d.phase.clone(),
            reason: status.and_then(|s| some(&s.reason)),
            created_by: d.created_by.clone(),
            created_at: created,
            finished_at: finished,
            rollback_of: some(&d.rollback_of),
            switch_back: status.is_some_and(|s| s.switch_back),
            summary: status.and_then(|s| some(&s.summary)),
            revision: d.revision,
            progress: status.filter(|_| with_progress).map(progress),
        }
    }
}

fn progress(s: &pb::DeploymentStatus) -> Progress {
    let phase = pb::DeploymentPhase::try_from(s.phase).ok();
    let under_way = matches!(
        phase,
        Some(
            pb::DeploymentPhase::Activating
                | pb::DeploymentPhase::Waiting
                | pb::DeploymentPhase::Switching
        )
    );
    Progress {
        release_id: s.release_id.clone(),
        strategy: pb::Strategy::try_from(s.strategy)
            .ok()
            .filter(|k| *k != pb::Strategy::Unspecified)
            .map(|k| enum_name(k.as_str_name(), "STRATEGY_")),
        batch: under_way.then_some(s.batch + 1),
        batches: s.batches,
        paused: s.paused,
        waiting_for: some(&s.blocked_on),
        waiting_until: time(&s.waiting_until),
        group: some(&s.group),
        old_group: some(&s.old_group),
        live_group_after: some(&s.live_group_after),
        hosts: s
            .hosts
            .iter()
            .map(|h| Host {
                host: h.host_id.clone(),
                batch: h.batch + 1,
                phase: super::deploy::host_phase_name(h.phase),
                reason: some(&h.reason),
            })
            .collect(),
        analyses: s
            .analyses
            .iter()
            .map(|a| Analysis {
                step: a.batch + 1,
                verdict: verdict(a.verdict),
                metrics: a
                    .metrics
                    .iter()
                    .map(|m| Metric {
                        metric: m.metric.clone(),
                        verdict: verdict(m.verdict),
                        canary: m.canary,
                        baseline: m.baseline,
                        canary_samples: m.canary_samples,
                        baseline_samples: m.baseline_samples,
                        p_value: m.p_value,
                        why: m.why.clone(),
                    })
                    .collect(),
            })
            .collect(),
        notes: s
            .notes
            .iter()
            .map(|n| Note {
                at: time(&n.at),
                message: n.message.clone(),
            })
            .collect(),
    }
}
