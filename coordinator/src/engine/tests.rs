//! The rollout engine's table and property tests: simulated agents and
//! made-up clocks.

use super::*;
use cutover_common::labels;

/// The host of `e` answered it successfully.
fn ok(e: &Effect) -> Event {
    Event::Result {
        host: e.host().into(),
        command_id: e.command_id().into(),
        ok: true,
        message: String::new(),
        failure: None,
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
            unready: None,
            active_release: Some("v1".into()),
            drained: None,
            capabilities: cutover_common::compat::current(),
        })
        .collect()
}

/// A rollout whose hosts count as done as soon as their swap is (no
/// watch after it); [`watched`] keeps the spec's `min_ready`.
fn rollout(extra: &str, n: usize) -> Rollout {
    let mut r = watched(extra, n);
    r.watch_ms = 0;
    r
}

fn watched(extra: &str, n: usize) -> Rollout {
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
                failure: None,
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
        assert!(!is_terminal_name(p.name()));
        assert!(
            crate::store::ACTIVE_PHASES.contains(&p.name()),
            "{} missing from ACTIVE_PHASES: a restart would not resume it",
            p.name()
        );
    }
    let ended = [
        Phase::Succeeded,
        Phase::RolledBack {
            reason: String::new(),
        },
        Phase::Aborted {
            reason: String::new(),
        },
        Phase::Failed {
            reason: String::new(),
        },
    ];
    for p in ended {
        assert!(p.is_terminal() && is_terminal_name(p.name()), "{p:?}");
        assert!(!ACTIVE_PHASES.contains(&p.name()));
    }
    assert_eq!(ACTIVE_PHASES.len() + TERMINAL_PHASES.len(), 10);
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
    let bake = "[strategy]\nkind = \"canary\"\nsteps = [ { hosts = \"100%\", pause = \"1m\" } ]\n";
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
                failure: None,
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

/// A pause shows in `status` ("now: ...") whatever the phase: while
/// staging, mid-batch, and during a canary's bake (which used to say
/// "waiting 0s more" for ever).
#[test]
fn a_pause_is_shown_while_staging_mid_batch_and_during_a_bake() {
    let mut r = rollout("[strategy]\nmax_unavailable = 1\n", 2);
    let q = r.step(Event::Start, 0);
    r.step(Event::Pause, 1);
    let now = r.blocked_on(1).unwrap();
    assert_eq!(
        now,
        "paused by an operator: 0/2 hosts staged, staging goes on, no batch starts; `cutover resume d1` to go on"
    );
    for e in &q {
        assert!(r.step(ok(e), 2).is_empty(), "paused: no batch starts");
    }
    let now = r.blocked_on(2).unwrap();
    assert!(
        now.starts_with("paused by an operator: 2/2 hosts staged, no batch"),
        "{now}"
    );
    let a = r.step(Event::Resume, 3);
    assert!(matches!(a.as_slice(), [Effect::Activate { host, .. }] if host == "web-1"));
    r.step(Event::Pause, 4);
    let now = r.blocked_on(4).unwrap();
    assert!(
        now.starts_with(
            "paused by an operator: batch 1/2 finishes (0/1 hosts healthy), then no batch starts"
        ),
        "{now}"
    );
    assert!(r.step(ok(&a[0]), 5).is_empty());
    let now = r.blocked_on(5).unwrap();
    assert!(
        now.starts_with("paused by an operator after batch 1/2"),
        "{now}"
    );

    let mut c = rollout(CANARY, 4);
    let e = c.step(Event::Start, 0);
    answer_all(&mut c, e, 1);
    c.step(Event::Pause, 2);
    // The bake's end passes: nothing moves, and the view says paused.
    assert!(c.step(Event::Tick, 120_000).is_empty());
    let now = c.blocked_on(120_000).unwrap();
    assert!(
        now.starts_with("step 1/3: paused by an operator") && !now.contains("waiting"),
        "{now}"
    );
    let refused = c.refuses(&Event::Promote).unwrap();
    assert!(
        refused.contains("is paused: `cutover resume d1` first"),
        "{refused}"
    );
    c.step(Event::Resume, 120_001);
    assert_eq!(c.refuses(&Event::Promote), None);
    c.step(Event::Tick, 120_002);
    let now = c.blocked_on(120_002).unwrap();
    assert!(now.contains("analysing"), "{now}");
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
            failure: None,
        },
        1,
    );
    r.step(
        Event::Result {
            host: "web-1".into(),
            command_id: "other-stage-0".into(),
            ok: true,
            message: String::new(),
            failure: None,
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
        e.to_string().contains(
            "matches no ready host (2 matching but left out: web-1: not ready; web-2: not ready)"
        ),
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
            unready: None,
            active_release: None,
            drained: None,
            capabilities: cutover_common::compat::current(),
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
    r.watch_ms = 0;
    let e = r.step(Event::Start, 0);
    let out = answer_all(&mut r, e, 1);
    assert!(
        matches!(r.phase, Phase::Switching { batch: 0 }),
        "{:?}",
        r.phase
    );
    // The switch is an effect for the runner, asked for once.
    let switch = Effect::Switch {
        live: "green".into(),
        old: Some("blue".into()),
        hosts: vec!["web-2".into(), "web-4".into()],
    };
    assert_eq!(out.last(), Some(&switch), "{out:?}");
    assert_eq!(out.iter().filter(|e| e.kind().is_none()).count(), 1);
    // A coordinator restart mid-switch asks for it again (traffic may be
    // on either group), and sends no host a command.
    let mut resumed = r.clone();
    assert_eq!(resumed.resume(5), vec![switch]);
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
    r.watch_ms = 0;
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
    assert!(
        r.step(Event::Tick, 61_000).is_empty(),
        "paused: the next step waits"
    );
    assert!(r.step(Event::Resume, 61_002).is_empty());
    // Resumed, the bake is judged on the samples of now, then the next
    // step starts.
    r.step(Event::Tick, 61_250);
    assert_eq!(r.analysis_wanted, Some(0));
    let e = r.step(
        Event::Analysis {
            batch: 0,
            report: report(crate::analysis::Verdict::Pass),
        },
        61_300,
    );
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
fn a_coordinator_down_longer_than_the_deadlines_fails_no_host_on_resume() {
    let mut r = rollout(
        "[strategy]\nmax_unavailable = 1\nhealthy_deadline = \"30s\"\nprogress_deadline = \"1m\"\n",
        2,
    );
    let mut activate = Vec::new();
    for stage in r.step(Event::Start, 0) {
        activate.extend(r.step(ok(&stage), 1));
    }
    assert!(
        matches!(activate.as_slice(), [Effect::Activate { host, .. }] if host == "web-1"),
        "{activate:?}"
    );
    // The coordinator dies with web-1's swap in flight and is back 10
    // minutes later: the swap's answer waits in web-1's journal.
    let back = 600_000;
    let again = r.resume(back);
    assert_eq!(again, activate, "the command in flight is sent again");
    assert!(r.step(Event::Tick, back + 250).is_empty());
    assert!(matches!(r.phase, Phase::Activating { .. }), "{:?}", r.phase);
    let next = r.step(ok(&activate[0]), back + 2_000);
    assert!(
        matches!(next.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"),
        "{next:?}"
    );
    // Deadlines still hold from the restart on.
    r.step(Event::Tick, back + 2_000 + 30_001);
    assert!(
        matches!(r.phase, Phase::RollingBack { .. }),
        "web-2 silent past its healthy deadline: {:?}",
        r.phase
    );
}

#[test]
fn a_paused_rollout_stays_as_it_is_tick_after_tick_until_resumed() {
    let mut r = rollout("[strategy]\nmax_unavailable = 1\n", 2);
    let stages = r.step(Event::Start, 0);
    r.step(Event::Pause, 1);
    for stage in stages {
        assert!(r.step(ok(&stage), 2).is_empty(), "paused: no batch starts");
    }
    let notes = r.notes.len();
    let before = r.clone();
    for t in 1..=20 {
        assert!(r.step(Event::Tick, 2 + t * 250).is_empty());
    }
    assert_eq!(r.notes.len(), notes, "{:#?}", &r.notes[notes..]);
    assert_eq!(r, before, "nothing to store again while paused");
    let e = r.step(Event::Resume, 10_000);
    assert!(
        matches!(e.as_slice(), [Effect::Activate { host, .. }] if host == "web-1"),
        "{e:?}"
    );
}

#[test]
fn a_canary_paused_during_its_bake_asks_for_no_analysis_until_resumed() {
    let mut r = rollout(
        "[strategy]\nkind = \"canary\"\nsteps = [ { hosts = 1, pause = \"1m\", analysis = true }, { hosts = \"100%\" } ]\n",
        2,
    );
    let e = r.step(Event::Start, 0);
    answer_all(&mut r, e, 1);
    assert!(matches!(r.phase, Phase::Waiting { .. }), "{:?}", r.phase);
    r.step(Event::Pause, 2);
    let notes = r.notes.len();
    for t in 0..20 {
        assert!(r.step(Event::Tick, 61_000 + t * 250).is_empty());
    }
    assert_eq!(r.analysis_wanted, None, "paused: the bake is not judged");
    assert_eq!(r.notes.len(), notes);
    r.step(Event::Resume, 70_000);
    r.step(Event::Tick, 70_250);
    assert_eq!(
        r.analysis_wanted,
        Some(0),
        "resumed: judged at the next tick"
    );
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

#[test]
fn a_batch_moves_on_only_once_its_hosts_stayed_healthy_for_min_ready_after_their_swap() {
    let mut r = watched(
        "[swap]\nmin_ready = \"2s\"\n[strategy]\nmax_unavailable = 1\n",
        2,
    );
    let staged = r.step(Event::Start, 0);
    let first = answer_all(&mut r, staged, 10);
    assert!(matches!(first.as_slice(), [Effect::Activate { host, .. }] if host == "web-1"));
    assert!(r.step(ok(&first[0]), 100).is_empty(), "web-1 is watched");
    assert!(r.step(Event::Tick, 1_500).is_empty(), "still watched");
    let second = r.step(Event::Tick, 2_100);
    assert!(matches!(second.as_slice(), [Effect::Activate { host, .. }] if host == "web-2"));
    r.step(ok(&second[0]), 2_200);
    r.step(Event::Tick, 3_000);
    assert!(
        matches!(r.phase, Phase::Activating { batch: 1 }),
        "the last batch is watched too: {:?}",
        r.phase
    );
    r.step(Event::Tick, 4_300);
    assert_eq!(r.phase, Phase::Succeeded);
}

#[test]
fn a_host_of_the_last_batch_turning_unhealthy_while_watched_rolls_everything_back() {
    let mut r = watched(
        "[swap]\nmin_ready = \"2s\"\n[strategy]\nmax_unavailable = \"100%\"\n",
        3,
    );
    let staged = r.step(Event::Start, 0);
    let activations = answer_all(&mut r, staged, 10);
    assert_eq!(activations.len(), 3, "one batch");
    answer_all(&mut r, activations, 100);
    assert!(matches!(r.phase, Phase::Activating { batch: 0 }));
    let out = r.step(
        Event::Unhealthy {
            host: "web-2".into(),
            status: "unhealthy".into(),
        },
        1_200,
    );
    let reverted: Vec<&str> = out
        .iter()
        .filter(|&e| matches!(e, Effect::Revert { .. }))
        .map(|e| e.host())
        .collect();
    assert_eq!(reverted, vec!["web-1", "web-2", "web-3"]);
    assert!(matches!(r.phase, Phase::RollingBack { .. }));
}

#[test]
fn a_recreate_leaves_the_hosts_already_on_its_release_running() {
    let s = spec("[strategy]\nkind = \"recreate\"\n");
    let mut hosts = fleet(3);
    hosts[1].active_release = Some("v2".into());
    let mut r = Rollout::new("d1", &s, "2", "v2", plan(&s, &hosts).unwrap(), 1, 0);
    let staged = r.step(Event::Start, 0);
    let stops = answer_all_but_stops(&mut r, staged);
    let stopped: Vec<&str> = stops.iter().map(|e| e.host()).collect();
    assert_eq!(stopped, vec!["web-1", "web-3"], "web-2 runs v2 already");
}

/// Answers the staging effects; returns the stops that follow.
fn answer_all_but_stops(r: &mut Rollout, staged: Vec<Effect>) -> Vec<Effect> {
    staged
        .iter()
        .flat_map(|e| r.step(ok(e), 1))
        .filter(|e| matches!(e, Effect::Stop { .. }))
        .collect()
}

#[test]
fn hosts_an_operator_drained_are_left_out_and_named_unless_included() {
    let mut f = fleet(3);
    f[1].drained = Some("drained and stopped by an operator (`cutover drain --stop`)".into());
    let s = spec("[strategy]\nkind = \"rolling\"\nmax_unavailable = 1");
    let p = plan(&s, &f).unwrap();
    assert_eq!(p.batches, vec![vec!["web-1"], vec!["web-3"]]);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].0, "web-2");
    assert!(
        p.skipped[0].1.contains("--include-drained"),
        "{:?}",
        p.skipped
    );
    let r = Rollout::new("d1", &s, "2", "v2", p, 1, 0);
    assert!(
        r.notes[0]
            .message
            .starts_with("web-2: left out: drained and stopped"),
        "{:?}",
        r.notes
    );
    // Asked for: included.
    let mut s = s;
    s.targets.include_drained = true;
    assert_eq!(plan(&s, &f).unwrap().batches.len(), 3);
    // Every matching host drained: the error names each and why.
    for c in &mut f {
        c.drained = Some("drained by an operator (`cutover drain`)".into());
    }
    let e = plan(&spec(""), &f).unwrap_err().to_string();
    assert!(
        e.contains("web-1: drained by an operator") && e.contains("web-3: drained"),
        "{e}"
    );
}

/// Drives a rollout whose agents answer as `answer` says (ok, message).
fn drive_with(r: &mut Rollout, mut answer: impl FnMut(&Effect) -> (bool, String)) -> Vec<Effect> {
    let mut now = 0;
    let mut queue = r.step(Event::Start, now);
    let mut all = queue.clone();
    while !queue.is_empty() {
        let e = queue.remove(0);
        now += 10;
        let (ok, message) = answer(&e);
        let more = r.step(
            Event::Result {
                host: e.host().into(),
                command_id: e.command_id().into(),
                ok,
                message,
                failure: None,
            },
            now,
        );
        all.extend(more.clone());
        queue.extend(more);
    }
    all
}

#[test]
fn a_host_drained_during_the_rollout_is_skipped_not_failed_and_not_rolled_back() {
    let skip_web2 = |e: &Effect| {
        if e.host() == "web-2" && matches!(e, Effect::Activate { .. }) {
            (
                false,
                format!(
                    "{} (drained (`cutover drain`)); nothing was changed",
                    cutover_common::SKIPPED_DRAINED
                ),
            )
        } else {
            (true, "ok".to_string())
        }
    };
    // max_failed is 0, and yet no rollback: a skip is not a failure.
    let mut r = rollout("[strategy]\nkind = \"rolling\"\nmax_unavailable = 1", 3);
    let effects = drive_with(&mut r, skip_web2);
    assert_eq!(r.phase, Phase::Succeeded, "{:?}", r.notes);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Revert { .. })));
    assert!(matches!(r.hosts["web-2"], HostPhase::Skipped { .. }));
    assert!(
        r.summary().contains("2/3 on 2, 1 skipped (drained)"),
        "{}",
        r.summary()
    );
    assert!(
        r.notes.iter().any(|n| n
            .message
            .starts_with("web-2: skipped, drained by an operator")),
        "{:?}",
        r.notes
    );
    // A real failure after it still rolls back, and the skipped host,
    // which never changed, gets no revert.
    let mut r = rollout("[strategy]\nkind = \"rolling\"\nmax_unavailable = 1", 3);
    let effects = drive_with(&mut r, |e| {
        if e.host() == "web-3" && matches!(e, Effect::Activate { .. }) {
            (false, "boom".into())
        } else {
            skip_web2(e)
        }
    });
    assert!(matches!(r.phase, Phase::RolledBack { .. }), "{:?}", r.phase);
    let reverted: Vec<&str> = effects
        .iter()
        .filter(|e| matches!(e, Effect::Revert { .. }))
        .map(|e| e.host())
        .collect();
    assert_eq!(reverted, ["web-1"]);
    // The same refusal from a recreate's stop skips the host too.
    let mut r = rollout("[strategy]\nkind = \"recreate\"", 3);
    drive_with(&mut r, |e| {
        if e.host() == "web-2" && matches!(e, Effect::Stop { .. }) {
            (
                false,
                format!("{} (drained)", cutover_common::SKIPPED_DRAINED),
            )
        } else {
            (true, "ok".to_string())
        }
    });
    assert_eq!(r.phase, Phase::Succeeded, "{:?}", r.notes);
    assert!(matches!(r.hosts["web-2"], HostPhase::Skipped { .. }));
}

#[test]
fn a_spec_setting_a_field_older_agents_cannot_honour_is_refused_naming_their_hosts() {
    let mut f = fleet(4);
    // web-2 and web-4: agents from before capabilities existed.
    f[1].capabilities.clear();
    f[3].capabilities.clear();
    // At its default the field is no obstacle: those agents are sent the
    // spec without it.
    assert!(plan(&spec(""), &f).is_ok());
    let e = plan(&spec("[drain]\nwait_for = \"delay\""), &f).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hosts web-2, web-4 run an agent without `drain.balancers`, which `drain.wait_for` in this spec needs: upgrade the agent (`cutover hosts` shows versions), or leave `drain.wait_for` at its default"
    );
    // Hosts the selector leaves out do not matter.
    let e = plan(&spec("[drain]\nwait_for = \"delay\""), &f[..2]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("host web-2 runs an agent without"),
        "{e}"
    );
    assert!(plan(&spec("[drain]\nwait_for = \"delay\""), &f[2..3]).is_ok());
}

#[test]
fn nothing_is_rolled_back_while_the_switch_command_runs() {
    let s = spec(BG);
    let p = plan_with(&s, &colored(4), Some("blue")).unwrap();
    let mut r = Rollout::new("d1", &s, "2", "v2", p, 1, 0);
    r.watch_ms = 0;
    let e = r.step(Event::Start, 0);
    answer_all(&mut r, e, 1);
    assert!(matches!(r.phase, Phase::Switching { .. }));
    // An operator's abort, a new host turning unhealthy and the progress
    // deadline passing all wait for the switch: stopping the group that
    // traffic may be moving to would take the service down.
    assert!(r.refuses(&Event::Abort).unwrap().contains("switch command"));
    assert!(r.refuses(&Event::Rollback).is_some());
    assert!(
        r.refuses(&Event::Promote)
            .unwrap()
            .contains("nothing waits")
    );
    assert!(r.refuses(&Event::Pause).is_none());
    assert!(r.step(Event::Abort, 2).is_empty());
    assert!(
        r.step(
            Event::Unhealthy {
                host: "web-2".into(),
                status: "readiness failing".into()
            },
            3
        )
        .is_empty()
    );
    assert!(
        r.step(Event::Tick, 3 + r.progress_deadline_ms * 2)
            .is_empty()
    );
    assert!(matches!(r.phase, Phase::Switching { .. }), "{:?}", r.phase);
    assert!(
        r.notes.iter().any(|n| n
            .message
            .contains("not rolled back while the switch command runs")),
        "{:?}",
        r.notes
    );
    r.step(
        Event::Switched {
            ok: true,
            detail: "exit 0".into(),
        },
        4,
    );
    assert_eq!(r.phase, Phase::Succeeded);
}

#[test]
fn a_result_counts_only_for_the_command_its_host_was_sent() {
    let mut r = rollout("[strategy]\nkind = \"rolling\"\nmax_unavailable = 1", 2);
    let staged = r.step(Event::Start, 0);
    let web1 = staged.iter().find(|e| e.host() == "web-1").unwrap().clone();
    let web2 = staged.iter().find(|e| e.host() == "web-2").unwrap().clone();
    let answer = |host: &str, id: String, ok: bool| Event::Result {
        host: host.into(),
        command_id: id,
        ok,
        message: "x".into(),
        failure: Some(cutover_common::failure::Failure::Invalid),
    };
    // web-2 answering web-1's command id, and web-1 answering a kind of
    // command it was not sent, change nothing.
    r.step(answer("web-2", web1.command_id().into(), false), 1);
    r.step(
        answer("web-1", r.command_id(CommandKind::Revert, "web-1"), false),
        1,
    );
    r.step(answer("web-1", "d1-stage-999".into(), false), 1);
    r.step(answer("web-1", "d9-stage-0".into(), false), 1);
    assert!(
        r.hosts.values().all(|p| matches!(p, HostPhase::Staging)),
        "{:?}",
        r.hosts
    );
    r.step(ok(&web1), 2);
    r.step(ok(&web2), 2);
    assert!(
        matches!(r.phase, Phase::Activating { batch: 0 }),
        "{:?}",
        r.phase
    );
}

fn failed(e: &Effect, kind: cutover_common::failure::Failure, message: &str) -> Event {
    Event::Result {
        host: e.host().into(),
        command_id: e.command_id().into(),
        ok: false,
        message: message.into(),
        failure: Some(kind),
    }
}

#[test]
fn a_transient_staging_failure_is_tried_again_with_a_new_id_then_fails_the_host() {
    use cutover_common::failure::Failure;
    let mut r = rollout("[strategy]\nkind = \"rolling\"\nmax_unavailable = 1", 2);
    let staged = r.step(Event::Start, 0);
    let first = staged.iter().find(|e| e.host() == "web-1").unwrap().clone();
    let mut cur = first.clone();
    let mut ids = vec![first.command_id().to_string()];
    for n in 1..=STAGE_RETRIES {
        let again = r.step(
            failed(&cur, Failure::Unavailable, "connection refused"),
            n as i64,
        );
        assert!(
            matches!(again.as_slice(), [Effect::Stage { host, .. }] if host == "web-1"),
            "{again:?}"
        );
        cur = again[0].clone();
        assert!(
            !ids.contains(&cur.command_id().to_string()),
            "a new id per try"
        );
        ids.push(cur.command_id().to_string());
        assert!(matches!(r.hosts["web-1"], HostPhase::Staging));
        // The first try's answer, heard again, changes nothing.
        assert!(
            r.step(failed(&first, Failure::Unavailable, "late"), n as i64)
                .is_empty()
        );
    }
    // A resumed coordinator re-sends the try in flight, not the first.
    assert!(
        r.clone()
            .resume(10)
            .iter()
            .any(|e| e.command_id() == cur.command_id())
    );
    assert!(
        r.step(failed(&cur, Failure::Unavailable, "still down"), 9)
            .is_empty()
    );
    assert!(
        matches!(&r.hosts["web-1"], HostPhase::Failed { reason } if reason == "still down"),
        "{:?}",
        r.hosts
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.message.contains("trying again (2 of 2)"))
    );
}

#[test]
fn a_bad_artifact_fails_the_host_at_once_and_a_drained_answer_skips_it_by_kind() {
    use cutover_common::failure::Failure;
    let mut r = rollout(
        "[strategy]\nkind = \"rolling\"\nmax_unavailable = 1\n[rollback]\nmax_failed = 1",
        2,
    );
    let staged = r.step(Event::Start, 0);
    let web1 = staged.iter().find(|e| e.host() == "web-1").unwrap().clone();
    let web2 = staged.iter().find(|e| e.host() == "web-2").unwrap().clone();
    assert!(
        r.step(failed(&web1, Failure::Artifact, "sha256 mismatch"), 1)
            .is_empty()
    );
    assert!(matches!(r.hosts["web-1"], HostPhase::Failed { .. }));
    let act = r.step(ok(&web2), 2);
    let [a] = act.as_slice() else {
        panic!("{act:?}")
    };
    // Worded as the agent likes: the kind decides.
    r.step(failed(a, Failure::Drained, "left alone: drained"), 3);
    assert!(
        matches!(r.hosts["web-2"], HostPhase::Skipped { .. }),
        "{:?}",
        r.hosts
    );
}

#[test]
fn a_spec_for_an_environment_no_host_is_in_says_where_the_matching_hosts_are() {
    let s = spec("environment = \"production\"\n");
    let mut f = fleet(3);
    f[0].labels.insert("environment".into(), "staging".into());
    let e = plan(&s, &f).unwrap_err().to_string();
    assert!(
        e.contains("matches no ready host in environment `production` (3 matching host(s) are in another: web-1 (environment=staging), web-2 (no environment label), web-3 (no environment label)"),
        "{e}"
    );
}

#[test]
fn a_deployment_that_needs_approval_stages_then_changes_no_host_until_approved() {
    let mut r = rollout(
        "approval = true\n[strategy]\nkind = \"rolling\"\nmax_unavailable = 1",
        2,
    );
    assert!(r.approval_required);
    let staged = r.step(Event::Start, 0);
    let mut out = Vec::new();
    for e in &staged {
        out.extend(r.step(ok(e), 1));
    }
    assert!(out.is_empty(), "nothing activates before approval: {out:?}");
    assert!(r.awaiting_approval);
    assert!(r.blocked_on(1).unwrap().contains("waiting for approval"));
    // Long past the progress deadline: a person may take their time.
    assert!(r.step(Event::Tick, r.progress_deadline_ms * 3).is_empty());
    assert_eq!(r.phase, Phase::Staging);
    assert!(r.refuses(&Event::Promote).is_some());
    let go = r.step(
        Event::Approve {
            by: "operator:bob".into(),
        },
        r.progress_deadline_ms * 3 + 1,
    );
    assert!(matches!(go.as_slice(), [Effect::Activate { .. }]), "{go:?}");
    assert_eq!(r.approved_by.as_deref(), Some("operator:bob"));
    assert!(
        r.refuses(&Event::Approve { by: "x".into() })
            .unwrap()
            .contains("approved already, by operator:bob")
    );
    // Without the spec's approval, approving is refused as pointless.
    let plain = rollout("", 1);
    assert!(
        plain
            .refuses(&Event::Approve { by: "x".into() })
            .unwrap()
            .contains("needs no approval")
    );
}
