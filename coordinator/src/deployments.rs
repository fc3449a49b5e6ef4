//! A service's deployment history and the rules read from it: what is live
//! in an environment, and what `cutover rollback` goes back to. The rules
//! are pure (`plan_rollback`, unit-tested below); `rollback` carries a plan
//! out against the store, the fleet and the runner.

use std::collections::HashSet;
use std::sync::Arc;

use crate::app::App;
use crate::engine::{Event, Note, Phase, Rollout};
use crate::rollout::{self, Job, RollbackOf, SubmitError};
use crate::store::{self, DeploymentRecord};

/// What the rollback rules need of one stored deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Past {
    pub id: String,
    pub version: String,
    /// The stored phase name (`succeeded`, `failed`, ...).
    pub phase: String,
    /// "" when the spec named none.
    pub environment: String,
    pub rollback_of: Option<String>,
    pub finished_ms: Option<i64>,
    /// Blue/green deployments that had a group serving before them.
    pub blue_green: Option<BlueGreen>,
}

/// The blue/green facts of a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct BlueGreen {
    /// The group that served before it: where a switch back goes.
    pub old_group: String,
    /// The switch failed: traffic may be on either group.
    pub traffic_unknown: bool,
    /// How long after its end the old group is kept for a switch back.
    pub keep_old_ms: i64,
    /// This deployment was itself a switch back.
    pub switch_back: bool,
}

impl Past {
    /// Reads a stored deployment. Only blue/green rollouts are parsed (a
    /// rollout of 10,000 hosts is about a megabyte of JSON).
    pub fn of(d: &DeploymentRecord) -> Past {
        let blue_green = if d.rollout_json.contains("\"old_group\":\"") {
            serde_json::from_str::<Rollout>(&d.rollout_json)
                .ok()
                .and_then(|r| {
                    let keep_old_ms = cutover_common::deploy::DeploySpec::parse(&d.spec_toml, "")
                        .map(|s| s.strategy.keep_old.as_millis() as i64)
                        .unwrap_or(0);
                    Some(BlueGreen {
                        old_group: r.old_group?,
                        traffic_unknown: r.traffic_unknown,
                        keep_old_ms,
                        switch_back: r.switch_back,
                    })
                })
        } else {
            None
        };
        Past {
            id: d.id.clone(),
            version: d.version.clone(),
            phase: d.phase.clone(),
            environment: d.environment.clone(),
            rollback_of: d.rollback_of.clone(),
            finished_ms: d.finished_at,
            blue_green,
        }
    }

    fn succeeded(&self) -> bool {
        self.phase == "succeeded"
    }
}

/// What a rollback does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackPlan {
    /// Blue/green: traffic back to `group`, which still runs the version
    /// of deployment `restores`. No host changes.
    SwitchBack {
        undoes: String,
        group: String,
        restores: String,
    },
    /// Deploy the version of deployment `target` again.
    Redeploy { target: String, undoes: String },
}

/// The newest deployment the plan was made from (the history must not
/// have moved when the plan is carried out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub plan: RollbackPlan,
    pub newest: String,
    pub environment: String,
}

/// Why there is nothing to roll back to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    #[error("no deployment of `{service}`{env}")]
    NotFound { service: String, env: Where },
    #[error(
        "`{service}` is deployed to several environments ({list}): say which with --environment"
    )]
    WhichEnvironment { service: String, list: String },
    #[error(
        "deployment {id} of `{service}` is still {phase}; wait for it, or `cutover abort {id}`"
    )]
    Running {
        service: String,
        id: String,
        phase: String,
    },
    #[error("`{service}`{env} has no earlier successful version to roll back to")]
    NoEarlier { service: String, env: Where },
    #[error("`{service}`{env} never deployed version {version} successfully")]
    NeverDeployed {
        service: String,
        env: Where,
        version: String,
    },
    #[error("version {version} is what `{service}` runs{env} now")]
    AlreadyLive {
        service: String,
        env: Where,
        version: String,
    },
    #[error(
        "group `{group}` served before deployment {id}, but which version it runs is no longer in the history: deploy that version again"
    )]
    OldVersionUnknown { group: String, id: String },
}

/// An environment in a message: ` in `production`` (nothing for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where(pub String);

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " in `{}`", self.0)
        }
    }
}

/// What `cutover rollback` does to `service` in `environment` (None: the
/// only one it is deployed to), given its history newest first.
///
/// - A rollback goes back one step from what is live in that environment,
///   never from another environment's deployments.
/// - Blue/green within `keep_old` of its end, or right after a failed
///   switch (traffic on either group): traffic goes back to the group that
///   served before. After a failed switch that group is right whichever
///   way the switch went.
/// - After a deployment that failed half-way (rollback off): the version
///   live before it, on every host.
/// - Otherwise the newest successful version before the one live now.
///   Deployments undone by a rollback are skipped: rolling back twice
///   does not bring the undone version back.
/// - A rollback that failed counts as not tried.
pub fn plan_rollback(
    service: &str,
    history: &[Past],
    environment: Option<&str>,
    to_version: Option<&str>,
    now_ms: i64,
) -> Result<Planned, RollbackError> {
    let env = match environment {
        Some(e) => e.to_string(),
        None => {
            let mut envs: Vec<&str> = history.iter().map(|d| d.environment.as_str()).collect();
            envs.sort_unstable();
            envs.dedup();
            if envs.len() > 1 {
                let list = envs
                    .iter()
                    .map(|e| if e.is_empty() { "none" } else { e })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RollbackError::WhichEnvironment {
                    service: service.into(),
                    list,
                });
            }
            envs.first().map(|e| e.to_string()).unwrap_or_default()
        }
    };
    let at = Where(env.clone());
    let h: Vec<&Past> = history
        .iter()
        .filter(|d| d.environment == env)
        // A rollback that did not work counts as not tried.
        .filter(|d| d.rollback_of.is_none() || d.succeeded())
        .collect();
    let Some(newest) = h.first().copied() else {
        return Err(RollbackError::NotFound {
            service: service.into(),
            env: at,
        });
    };
    if !crate::engine::is_terminal_name(&newest.phase) {
        return Err(RollbackError::Running {
            service: service.into(),
            id: newest.id.clone(),
            phase: newest.phase.clone(),
        });
    }
    let undone: HashSet<&str> = h
        .iter()
        .filter(|d| d.succeeded())
        .filter_map(|d| d.rollback_of.as_deref())
        .collect();
    let live = |d: &Past| d.succeeded() && !undone.contains(d.id.as_str());
    let planned = |plan| Planned {
        plan,
        newest: newest.id.clone(),
        environment: env.clone(),
    };
    // What was live before the newest deployment.
    let before_newest = h[1..].iter().copied().find(|d| live(d));
    if let Some(v) = to_version {
        let current = h.iter().copied().find(|d| live(d));
        if newest.phase != "failed"
            && let Some(c) = current
            && c.version == v
        {
            return Err(RollbackError::AlreadyLive {
                service: service.into(),
                env: at,
                version: v.into(),
            });
        }
        let Some(t) = h.iter().copied().find(|d| d.succeeded() && d.version == v) else {
            return Err(RollbackError::NeverDeployed {
                service: service.into(),
                env: at,
                version: v.into(),
            });
        };
        let undoes = match current {
            Some(c) if newest.phase != "failed" => c.id.clone(),
            _ => newest.id.clone(),
        };
        return Ok(planned(RollbackPlan::Redeploy {
            target: t.id.clone(),
            undoes,
        }));
    }
    if let Some(bg) = &newest.blue_green
        && !bg.switch_back
        && newest.rollback_of.is_none()
    {
        let kept = live(newest)
            && newest
                .finished_ms
                .is_some_and(|f| now_ms - f <= bg.keep_old_ms);
        let switch_failed = newest.phase == "failed" && bg.traffic_unknown;
        if kept || switch_failed {
            let Some(restores) = before_newest else {
                return Err(RollbackError::OldVersionUnknown {
                    group: bg.old_group.clone(),
                    id: newest.id.clone(),
                });
            };
            return Ok(planned(RollbackPlan::SwitchBack {
                undoes: newest.id.clone(),
                group: bg.old_group.clone(),
                restores: restores.id.clone(),
            }));
        }
    }
    if newest.phase == "failed" {
        // Left half-way: every host back on what was live before it.
        let Some(t) = before_newest else {
            return Err(RollbackError::NoEarlier {
                service: service.into(),
                env: at,
            });
        };
        return Ok(planned(RollbackPlan::Redeploy {
            target: t.id.clone(),
            undoes: newest.id.clone(),
        }));
    }
    let Some((i, current)) = h.iter().copied().enumerate().find(|(_, d)| live(d)) else {
        return Err(RollbackError::NoEarlier {
            service: service.into(),
            env: at,
        });
    };
    let Some(t) = h[i + 1..]
        .iter()
        .copied()
        .find(|d| live(d) && d.version != current.version)
    else {
        return Err(RollbackError::NoEarlier {
            service: service.into(),
            env: at,
        });
    };
    Ok(planned(RollbackPlan::Redeploy {
        target: t.id.clone(),
        undoes: current.id.clone(),
    }))
}

/// The spec an operator's rollback runs: the way back waits for nobody.
/// No approval, no canary pause (manual or timed) and no analysis: the
/// version it goes back to already ran here. (Windows and the promotion
/// gate pass rollbacks too, in `rollout::submit`.)
pub fn unheld(spec: &mut cutover_common::deploy::DeploySpec) {
    spec.targets.approval = false;
    for step in &mut spec.strategy.steps {
        step.pause = None;
        step.analysis = false;
    }
}

/// Rolls `service` back in `environment` (see `plan_rollback`). A switch
/// back is done when this returns; a redeployment has started.
pub async fn rollback(
    app: &Arc<App>,
    actor: String,
    service: &str,
    environment: Option<String>,
    to_version: Option<String>,
) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    let svc = service.to_string();
    let all = app
        .store
        .call(move |c| store::list_deployments(c, &svc, 200))
        .await?;
    let history: Vec<Past> = all.iter().map(Past::of).collect();
    let planned = plan_rollback(
        service,
        &history,
        environment.as_deref(),
        to_version.as_deref(),
        cutover_common::time::now_ms(),
    )?;
    let by_id = |id: &str| {
        all.iter()
            .find(|d| d.id == id)
            .cloned()
            .ok_or_else(|| SubmitError::Internal(format!("deployment {id} vanished")))
    };
    match planned.plan.clone() {
        RollbackPlan::Redeploy { target, undoes } => {
            let t = by_id(&target)?;
            let mut j = Job::new(
                &t.spec_toml,
                &format!("deployment {}", t.id),
                &t.version,
                &t.artifact_url,
                &t.artifact_sha256,
            )?;
            // A rollback reaches drained hosts too: one stopped by `drain
            // --stop` gets the older release recorded (not started), so
            // that `undrain` does not start the version being rolled back.
            j.spec.targets.include_drained = true;
            unheld(&mut j.spec);
            let of = RollbackOf {
                undoes,
                newest: planned.newest,
            };
            let by = rollout::Submission {
                actor,
                rollback: Some(of),
                ..Default::default()
            };
            rollout::submit(app, j, by).await
        }
        RollbackPlan::SwitchBack {
            undoes,
            group,
            restores,
        } => {
            let (n, r) = (by_id(&undoes)?, by_id(&restores)?);
            switch_back(app, actor, n, r, group, planned.newest).await
        }
    }
}

/// Moves traffic back to `group` (running `restored`'s version), undoing
/// deployment `n`: recorded as a deployment of its own, a rollback of `n`.
async fn switch_back(
    app: &Arc<App>,
    actor: String,
    n: DeploymentRecord,
    restored: DeploymentRecord,
    group: String,
    newest: String,
) -> Result<(DeploymentRecord, Rollout), SubmitError> {
    // The switch command of the deployment being undone (the newest
    // configuration), with the restored version in its environment.
    let job = Job::new(
        &n.spec_toml,
        &format!("deployment {}", n.id),
        &n.version,
        &n.artifact_url,
        &n.artifact_sha256,
    )?;
    let label = job.spec.strategy.group_label.clone();
    let hosts: Vec<String> = rollout::candidates(app, &n.service)
        .into_iter()
        .filter(|c| c.ready && c.labels.get(&label) == Some(&group))
        .map(|c| c.host)
        .collect();
    if hosts.is_empty() {
        return Err(SubmitError::Switch(format!(
            "no ready host in group `{group}`: cannot switch back"
        )));
    }
    let template: Rollout = serde_json::from_str(&n.rollout_json)
        .map_err(|e| SubmitError::Internal(format!("deployment {} is unreadable: {e}", n.id)))?;
    let restored_release = serde_json::from_str::<Rollout>(&restored.rollout_json)
        .map(|r| r.release_id)
        .unwrap_or_default();
    let (a, svc, env) = (actor.clone(), n.service.clone(), n.environment.clone());
    let floor = app.fleet.newest_epoch() as i64 + 1;
    let (n_id, r2) = (n.id.clone(), restored.clone());
    let (g, hs) = (group.clone(), hosts.clone());
    // Stored as running ("switching") before the switch runs: the service
    // is busy meanwhile, and a coordinator that dies mid-switch resumes it
    // (the switch is run again: traffic to `group`).
    let (record, mut r) = app
        .store
        .call(move |c| {
            let mut tx = c.transaction()?;
            if let Some(e) = rollout::busy_or_moved(&mut tx, &svc, &env, &newest)? {
                return Ok(Err(e));
            }
            let seq = store::next_deployment_seq(&mut tx)?.max(floor);
            let id = format!("d{seq}");
            let now = cutover_common::time::now_ms();
            let mut r = template;
            r.id = id.clone();
            r.version = r2.version.clone();
            r.release_id = restored_release;
            r.batches = vec![hs];
            r.hosts.clear();
            r.from.clear();
            r.degraded.clear();
            r.verdicts.clear();
            r.steps.clear();
            r.analysis_wanted = None;
            r.held_batch = None;
            r.paused = false;
            r.old_group = r.group.take();
            r.group = Some(g.clone());
            r.live_group_after = None;
            r.traffic_unknown = false;
            r.switch_back = true;
            r.revision = 1;
            r.started_ms = now;
            r.progress_since_ms = now;
            r.rollback_since_ms = None;
            r.finished_ms = None;
            r.epoch = seq as u64;
            r.notes = vec![Note {
                at_ms: now,
                message: format!(
                    "switching traffic back to group {g}, which runs version {} (undoing {n_id}), by {a}",
                    r2.version
                ),
            }];
            r.phase = Phase::Switching { batch: 0 };
            let record = DeploymentRecord {
                seq,
                id,
                service: r2.service.clone(),
                version: r2.version.clone(),
                spec_toml: r2.spec_toml.clone(),
                artifact_url: r2.artifact_url.clone(),
                artifact_sha256: r2.artifact_sha256.clone(),
                rollout_json: serde_json::to_string(&r).expect("serializable"),
                phase: r.phase.name().into(),
                created_by: a,
                created_at: now,
                finished_at: None,
                commit_time: None,
                environment: env,
                rollback_of: Some(n_id),
            };
            store::insert_deployment(&mut tx, &record)?;
            tx.commit()?;
            Ok(Ok((record, r)))
        })
        .await??;
    let (ok, detail) = rollout::run_switch(
        &job,
        &rollout::SwitchEnv::of(&r),
        &group,
        r.old_group.as_deref(),
        &hosts,
    )
    .await;
    r.step(
        Event::Switched {
            ok,
            detail: detail.clone(),
        },
        cutover_common::time::now_ms(),
    );
    r.revision += 1;
    let live = r.live_group_after.clone();
    let (id, json, phase, fin) = (
        record.id.clone(),
        serde_json::to_string(&r).expect("serializable"),
        r.phase.name().to_string(),
        r.finished_ms,
    );
    app.store
        .call(move |c| store::update_deployment(c, &id, &json, &phase, fin, live.as_deref()))
        .await?;
    app.notify(crate::notify::Event::Started, &record.id);
    app.notify(crate::notify::Event::Finished, &record.id);
    if !ok {
        return Err(SubmitError::Switch(format!(
            "{detail} (recorded as {}; traffic may be on either group: check, then run the rollback again)",
            record.id
        )));
    }
    let rid = record.id.clone();
    let record = app
        .store
        .call(move |c| store::get_deployment(c, &rid))
        .await?
        .unwrap_or(record);
    Ok((record, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollbacks_spec_waits_for_no_approval_pause_or_analysis() {
        let mut spec = cutover_common::deploy::DeploySpec::parse(
            "service = \"web\"\n[run]\ncommand = [\"bin/web\"]\n[targets]\nselector = \"role=web\"\napproval = true\n[strategy]\nkind = \"canary\"\nsteps = [ { hosts = \"1\", pause = \"manual\" }, { hosts = \"50%\", pause = \"10m\", analysis = true }, { hosts = \"100%\" } ]\n",
            "web.toml",
        )
        .unwrap();
        unheld(&mut spec);
        assert!(!spec.targets.approval);
        assert!(
            spec.strategy
                .steps
                .iter()
                .all(|s| s.pause.is_none() && !s.analysis),
            "{:?}",
            spec.strategy.steps
        );
        // Still the canary's batches.
        assert_eq!(spec.strategy.steps.len(), 3);
    }

    const H: i64 = 3_600_000;

    fn d(id: &str, version: &str, phase: &str) -> Past {
        Past {
            id: id.into(),
            version: version.into(),
            phase: phase.into(),
            environment: "production".into(),
            rollback_of: None,
            finished_ms: Some(10 * H),
            blue_green: None,
        }
    }
    fn bg(mut p: Past, old: &str) -> Past {
        p.blue_green = Some(BlueGreen {
            old_group: old.into(),
            traffic_unknown: p.phase == "failed",
            keep_old_ms: H,
            switch_back: false,
        });
        p
    }
    fn env(mut p: Past, e: &str) -> Past {
        p.environment = e.into();
        p
    }
    fn undoing(mut p: Past, of: &str) -> Past {
        p.rollback_of = Some(of.into());
        p
    }
    fn plan(h: &[Past]) -> Result<RollbackPlan, RollbackError> {
        plan_rollback("web", h, None, None, 10 * H + 60_000).map(|p| p.plan)
    }
    fn redeploy(target: &str, undoes: &str) -> RollbackPlan {
        RollbackPlan::Redeploy {
            target: target.into(),
            undoes: undoes.into(),
        }
    }

    #[test]
    fn goes_back_one_version_from_the_newest_success() {
        let h = [
            d("d3", "3", "succeeded"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d2", "d3")));
        // A deployment rolled back by itself is not live: back from 2.
        let h = [
            d("d3", "3", "rolled_back"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d1", "d2")));
        // The same version deployed twice is one step.
        let h = [
            d("d3", "2", "succeeded"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d1", "d3")));
    }

    #[test]
    fn rolling_back_twice_does_not_bring_the_undone_version_back() {
        let h = [
            undoing(d("d3", "1", "succeeded"), "d2"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(
            plan(&h),
            Err(RollbackError::NoEarlier {
                service: "web".into(),
                env: Where("production".into())
            })
        );
        // A rollback that failed counts as not tried: the same plan again.
        let h = [
            undoing(d("d3", "1", "failed"), "d2"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d1", "d2")));
    }

    #[test]
    fn another_environments_deployments_are_not_what_is_live_here() {
        let h = [
            env(d("d4", "3", "succeeded"), "staging"),
            d("d3", "2", "succeeded"),
            env(d("d2", "2", "succeeded"), "staging"),
            d("d1", "1", "succeeded"),
        ];
        assert!(matches!(
            plan(&h),
            Err(RollbackError::WhichEnvironment { ref list, .. }) if list == "production, staging"
        ));
        let p = plan_rollback("web", &h, Some("production"), None, 0).unwrap();
        assert_eq!(p.plan, redeploy("d1", "d3"));
        assert_eq!(p.newest, "d3");
        let p = plan_rollback("web", &h, Some("staging"), None, 0).unwrap();
        assert_eq!(p.plan, redeploy("d2", "d4"));
        assert!(matches!(
            plan_rollback("web", &h, Some("qa"), None, 0),
            Err(RollbackError::NotFound { .. })
        ));
    }

    #[test]
    fn a_failed_deployment_goes_back_to_what_was_live_before_it() {
        // Rollback off: hosts left half on 3. Back to 2, not to 1.
        let h = [
            d("d3", "3", "failed"),
            d("d2", "2", "succeeded"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d2", "d3")));
    }

    #[test]
    fn blue_green_switches_back_within_keep_old_and_after_a_failed_switch() {
        let h = [
            bg(d("d3", "3", "succeeded"), "blue"),
            bg(d("d2", "2", "succeeded"), "green"),
            d("d1", "1", "succeeded"),
        ];
        let back = RollbackPlan::SwitchBack {
            undoes: "d3".into(),
            group: "blue".into(),
            restores: "d2".into(),
        };
        assert_eq!(plan(&h), Ok(back.clone()));
        // Past keep_old: the old group may have been reused; deploy 2.
        assert_eq!(
            plan_rollback("web", &h, None, None, 12 * H).map(|p| p.plan),
            Ok(redeploy("d2", "d3"))
        );
        // The switch to 3 failed: traffic is on blue or green, and blue
        // (running 2) is right either way. Not 1, two versions back.
        let h = [
            bg(d("d3", "3", "failed"), "blue"),
            bg(d("d2", "2", "succeeded"), "green"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(back.clone()));
        // Also long after.
        assert_eq!(
            plan_rollback("web", &h, None, None, 100 * H).map(|p| p.plan),
            Ok(back)
        );
    }

    #[test]
    fn after_a_switch_back_the_next_rollback_steps_back_from_the_restored_version() {
        let mut sb = bg(undoing(d("d4", "2", "succeeded"), "d3"), "green");
        if let Some(b) = &mut sb.blue_green {
            b.switch_back = true;
        }
        let h = [
            sb,
            bg(d("d3", "3", "succeeded"), "blue"),
            bg(d("d2", "2", "succeeded"), "green"),
            d("d1", "1", "succeeded"),
        ];
        assert_eq!(plan(&h), Ok(redeploy("d1", "d4")));
    }

    #[test]
    fn a_named_version_and_the_refusals() {
        let h = [
            d("d3", "3", "succeeded"),
            d("d2", "2", "rolled_back"),
            d("d1", "1", "succeeded"),
        ];
        let named = |v| plan_rollback("web", &h, None, Some(v), 0).map(|p| p.plan);
        assert_eq!(named("1"), Ok(redeploy("d1", "d3")));
        assert!(matches!(
            named("2"),
            Err(RollbackError::NeverDeployed { .. })
        ));
        assert!(matches!(named("3"), Err(RollbackError::AlreadyLive { .. })));
        let h = [d("d2", "2", "activating"), d("d1", "1", "succeeded")];
        assert!(matches!(plan(&h), Err(RollbackError::Running { .. })));
        assert!(matches!(plan(&[]), Err(RollbackError::NotFound { .. })));
        let h = [d("d1", "1", "succeeded")];
        assert!(matches!(plan(&h), Err(RollbackError::NoEarlier { .. })));
    }
}
