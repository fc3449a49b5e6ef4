//! The engine's rollout as the wire's typed `DeploymentStatus`: the one
//! place engine types become protobuf ones (the engine's own state stays
//! inside; `rollout_json` is kept for clients of the previous release).

use cutover_proto::v1 as pb;

use cutover_common::deploy::StrategyKind;

use crate::engine::{HostPhase, Phase, Rollout};

/// Unix milliseconds as a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds as a protobuf duration.
pub fn duration(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A plan, typed.
pub fn plan(p: &crate::engine::Plan) -> pb::PlanResponse {
    pb::PlanResponse {
        plan_json: serde_json::to_string(p).expect("serializable"),
        batches: p
            .batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let step = p.steps.get(i).cloned().unwrap_or_default();
                pb::PlannedBatch {
                    hosts: b
                        .iter()
                        .map(|h| pb::PlannedHost {
                            host_id: h.clone(),
                            runs_now: p.from.get(h).cloned().flatten().unwrap_or_default(),
                        })
                        .collect(),
                    pause: step.pause_ms.map(duration),
                    promote: step.manual,
                    analysis: step.analysis,
                    switch_traffic: step.switch,
                }
            })
            .collect(),
        skipped: p
            .skipped
            .iter()
            .map(|(h, why)| pb::SkippedHost {
                host_id: h.clone(),
                reason: why.clone(),
            })
            .collect(),
        max_failed: p.max_failed as u32,
        group: p.group.clone().unwrap_or_default(),
        old_group: p.old_group.clone().unwrap_or_default(),
    }
}

/// The phase, with its reason when it has one.
pub fn phase(p: &Phase) -> (pb::DeploymentPhase, String) {
    use pb::DeploymentPhase as D;
    match p {
        Phase::Staging => (D::Staging, String::new()),
        Phase::Stopping => (D::Stopping, String::new()),
        Phase::Activating { .. } => (D::Activating, String::new()),
        Phase::Waiting { .. } => (D::Waiting, String::new()),
        Phase::Switching { .. } => (D::Switching, String::new()),
        Phase::RollingBack { reason, .. } => (D::RollingBack, reason.clone()),
        Phase::Succeeded => (D::Succeeded, String::new()),
        Phase::RolledBack { reason } => (D::RolledBack, reason.clone()),
        Phase::Aborted { reason } => (D::Aborted, reason.clone()),
        Phase::Failed { reason } => (D::Failed, reason.clone()),
    }
}

/// A host's phase, with its reason when it has one.
pub fn host_phase(p: &HostPhase) -> (pb::HostPhase, String) {
    use pb::HostPhase as H;
    match p {
        HostPhase::Pending => (H::Pending, String::new()),
        HostPhase::Staging => (H::Staging, String::new()),
        HostPhase::Staged => (H::Staged, String::new()),
        HostPhase::Stopping { .. } => (H::Stopping, String::new()),
        HostPhase::Stopped => (H::Stopped, String::new()),
        HostPhase::Activating { .. } => (H::Activating, String::new()),
        HostPhase::Done { .. } => (H::Done, String::new()),
        HostPhase::Failed { reason } => (H::Failed, reason.clone()),
        HostPhase::Skipped { reason } => (H::Skipped, reason.clone()),
        HostPhase::RollingBack => (H::RollingBack, String::new()),
        HostPhase::RolledBack => (H::RolledBack, String::new()),
        HostPhase::RollbackFailed { reason } => (H::RollbackFailed, reason.clone()),
    }
}

fn strategy(s: StrategyKind) -> pb::Strategy {
    match s {
        StrategyKind::Rolling => pb::Strategy::Rolling,
        StrategyKind::Recreate => pb::Strategy::Recreate,
        StrategyKind::Canary => pb::Strategy::Canary,
        StrategyKind::BlueGreen => pb::Strategy::BlueGreen,
    }
}

/// A rollout's progress as of `now_ms`.
pub fn status(r: &Rollout, now_ms: i64) -> pb::DeploymentStatus {
    let (phase, reason) = phase(&r.phase);
    let batch_of = |h: &str| {
        r.batches
            .iter()
            .position(|b| b.iter().any(|x| x == h))
            .unwrap_or(0) as u32
    };
    let (batch, waiting_until) = match &r.phase {
        Phase::Activating { batch } | Phase::Switching { batch } => (*batch, None),
        Phase::Waiting {
            batch, until_ms, ..
        } => (*batch, until_ms.map(timestamp)),
        _ => (0, None),
    };
    pb::DeploymentStatus {
        phase: phase as i32,
        reason,
        batch: batch as u32,
        batches: r.batches.len() as u32,
        paused: r.paused,
        waiting_until,
        blocked_on: r.blocked_on(now_ms).unwrap_or_default(),
        hosts: r
            .hosts
            .iter()
            .map(|(h, p)| {
                let (phase, reason) = host_phase(p);
                pb::HostProgress {
                    host_id: h.clone(),
                    phase: phase as i32,
                    reason,
                    batch: batch_of(h),
                }
            })
            .collect(),
        notes: r
            .notes
            .iter()
            .map(|n| pb::RolloutNote {
                at: Some(timestamp(n.at_ms)),
                message: n.message.clone(),
            })
            .collect(),
        strategy: strategy(r.strategy) as i32,
        group: r.group.clone().unwrap_or_default(),
        old_group: r.old_group.clone().unwrap_or_default(),
        live_group_after: r.live_group_after.clone().unwrap_or_default(),
        release_id: r.release_id.clone(),
        started_at: Some(timestamp(r.started_ms)),
        switch_back: r.switch_back,
        summary: r.summary(),
        analyses: r
            .verdicts
            .iter()
            .map(|(batch, report)| pb::AnalysisVerdict {
                batch: *batch as u32,
                verdict: verdict(&report.verdict) as i32,
                metrics: report
                    .metrics
                    .iter()
                    .map(|m| pb::MetricVerdict {
                        metric: m.metric.clone(),
                        canary: m.canary,
                        baseline: m.baseline,
                        canary_samples: m.canary_n as u64,
                        baseline_samples: m.baseline_n as u64,
                        p_value: m.p_value,
                        verdict: verdict(&m.verdict) as i32,
                        why: m.why.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn verdict(v: &crate::analysis::Verdict) -> pb::Verdict {
    match v {
        crate::analysis::Verdict::Pass => pb::Verdict::Pass,
        crate::analysis::Verdict::Fail => pb::Verdict::Fail,
        crate::analysis::Verdict::Inconclusive => pb::Verdict::Inconclusive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_milliseconds_and_times_before_1970() {
        assert_eq!(
            timestamp(1_700_000_000_123),
            prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000
            }
        );
        assert_eq!(
            timestamp(-1),
            prost_types::Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }

    #[test]
    fn every_phase_has_its_wire_value_and_reasons_travel() {
        let phases = [
            (Phase::Staging, pb::DeploymentPhase::Staging),
            (Phase::Stopping, pb::DeploymentPhase::Stopping),
            (
                Phase::Activating { batch: 1 },
                pb::DeploymentPhase::Activating,
            ),
            (
                Phase::Waiting {
                    batch: 0,
                    until_ms: None,
                    retries: 0,
                },
                pb::DeploymentPhase::Waiting,
            ),
            (
                Phase::Switching { batch: 0 },
                pb::DeploymentPhase::Switching,
            ),
            (
                Phase::RollingBack {
                    reason: "r".into(),
                    aborted: false,
                },
                pb::DeploymentPhase::RollingBack,
            ),
            (Phase::Succeeded, pb::DeploymentPhase::Succeeded),
            (
                Phase::RolledBack { reason: "r".into() },
                pb::DeploymentPhase::RolledBack,
            ),
            (
                Phase::Aborted { reason: "r".into() },
                pb::DeploymentPhase::Aborted,
            ),
            (
                Phase::Failed { reason: "r".into() },
                pb::DeploymentPhase::Failed,
            ),
        ];
        for (p, want) in phases {
            let (got, reason) = phase(&p);
            assert_eq!(got, want, "{p:?}");
            // The wire's enum name is the engine's phase name.
            assert_eq!(
                got.as_str_name(),
                format!("DEPLOYMENT_PHASE_{}", p.name().to_uppercase())
            );
            let has_reason = matches!(
                p,
                Phase::RollingBack { .. }
                    | Phase::RolledBack { .. }
                    | Phase::Aborted { .. }
                    | Phase::Failed { .. }
            );
            assert_eq!(reason == "r", has_reason, "{p:?}");
        }
    }
}
