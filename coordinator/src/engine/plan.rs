//! Planning: the batches a spec makes against the fleet, computed apart
//! from carrying them out, and explaining itself (skipped hosts, each
//! step's policy).

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
    /// Why it is not ready, as the refusal of a plan names it.
    pub unready: Option<String>,
    /// The release of this service the host runs now, if any.
    pub active_release: Option<String>,
    /// Why an operator has this service out of service here (drained,
    /// or drained and stopped); None: in service.
    pub drained: Option<String>,
    /// What the host's agent can do beyond the baseline
    /// (`cutover_common::compat`).
    pub capabilities: Vec<String>,
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
    #[error(
        "targets.selector `{selector}` matches no ready host{}{}",
        match environment {
            Some(env) if !other_environments.is_empty() => format!(
                " in environment `{env}` ({} matching host(s) are in another: {}; hosts are in an environment by their `environment` label)",
                other_environments.len(),
                other_environments.join(", ")
            ),
            Some(env) => format!(" in environment `{env}`"),
            None => String::new(),
        },
        if .not_ready.is_empty() { String::new() } else { format!(" ({} matching but left out: {})", .not_ready.len(), .not_ready.join("; ")) }
    )]
    NoHosts {
        selector: String,
        not_ready: Vec<String>,
        /// The spec's `targets.environment`.
        environment: Option<String>,
        /// Hosts the selector matches in other environments (`host
        /// (environment=x)`, or `(no environment label)`).
        other_environments: Vec<String>,
    },
    #[error("no ready host of group `{group}` (label {label}={group}) among the targets")]
    EmptyGroup { label: String, group: String },
    #[error(
        "{} an agent without `{capability}`, which `{field}` in this spec needs: upgrade the agent (`cutover hosts` shows versions), or leave `{field}` at its default",
        if hosts.len() == 1 { format!("host {} runs", hosts[0]) } else { format!("hosts {} run", hosts.join(", ")) }
    )]
    AgentTooOld {
        hosts: Vec<String>,
        field: String,
        capability: String,
    },
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
    let mut other_environments = Vec::new();
    for c in fleet {
        if !selector.matches(&c.labels) {
            continue;
        }
        if let Some(env) = &spec.targets.environment
            && c.labels.get("environment") != Some(env)
        {
            other_environments.push(match c.labels.get("environment") {
                Some(e) => format!("{} (environment={e})", c.host),
                None => format!("{} (no environment label)", c.host),
            });
            continue;
        }
        if !c.ready {
            skipped.push((
                c.host.clone(),
                c.unready.clone().unwrap_or_else(|| "not ready".into()),
            ));
        } else if let Some(why) = c.drained.as_ref().filter(|_| !spec.targets.include_drained) {
            skipped.push((
                c.host.clone(),
                format!("{why}: undrain it, or deploy with --include-drained"),
            ));
        } else {
            targets.push(c.clone());
        }
    }
    targets.sort_by(|a, b| a.host.cmp(&b.host));
    // Agents one version older than the coordinator: a spec that sets a
    // field they cannot honour is refused before anything is staged.
    let service_spec = spec.service_spec();
    let mut too_old: Vec<(cutover_common::compat::Unmet, String)> = Vec::new();
    for t in &targets {
        for u in cutover_common::compat::unmet(&service_spec, &t.capabilities) {
            too_old.push((u, t.host.clone()));
        }
    }
    if let Some((first, _)) = too_old.first().cloned() {
        return Err(PlanError::AgentTooOld {
            hosts: too_old
                .iter()
                .filter(|(u, _)| *u == first)
                .map(|(_, h)| h.clone())
                .collect(),
            field: first.field.into(),
            capability: first.capability.into(),
        });
    }
    if targets.is_empty() {
        return Err(PlanError::NoHosts {
            environment: spec.targets.environment.clone(),
            other_environments,
            selector: spec.targets.selector.clone(),
            not_ready: skipped
                .into_iter()
                .map(|(h, why)| format!("{h}: {why}"))
                .collect(),
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
