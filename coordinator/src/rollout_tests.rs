//! The runner between the pure engine and the fleet, driven in-process:
//! a real store in a temporary directory, the real fleet registry with
//! fake agents on its sessions (answering through the same route as the
//! gRPC edge), and paused time, so deadlines pass without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_common::failure::Failure;
use cutover_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::app::App;
use crate::fleet::{Fleet, HelloInfo, SessionHandle};
use crate::store::HostRecord;

/// What a fake agent does with a command: answer (ok, failure kind), or
/// stay silent.
type Answer = Arc<dyn Fn(&str, &pb::Command) -> Option<(bool, Option<Failure>)> + Send + Sync>;

struct Fake {
    app: Arc<App>,
    /// (host, command id) in the order commands arrived (re-sends too).
    got: Arc<Mutex<Vec<(String, String)>>>,
    _dir: tempfile::TempDir,
}

fn record(id: &str, labels: &str) -> HostRecord {
    HostRecord {
        id: id.into(),
        token_labels: cutover_common::labels::parse(labels).unwrap(),
        agent_labels: Default::default(),
        state: "enrolled".into(),
        enrolled_at: 0,
        token_id: "t".into(),
        last_seen: None,
        agent_version: String::new(),
        address: String::new(),
        boot_id: String::new(),
        facts: Default::default(),
        cert_serial: format!("serial-{id}"),
        cert_not_after: 0,
        prev_cert_serial: String::new(),
    }
}

/// A coordinator's middle layer with `n` hosts (`web-1`..), each with a
/// fake agent answering as `answer` says.
fn fleet(n: usize, answer: Answer) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::CoordinatorConfig {
        state_dir: dir.path().into(),
        ..Default::default()
    };
    let app = Arc::new(App {
        store: crate::store::Store::open(&dir.path().join("store.db")).unwrap(),
        fleet: Fleet::new(Vec::new(), Duration::from_secs(3600)),
        ca: cutover_common::pki::Ca::generate("test").unwrap(),
        url: "https://coordinator.test".into(),
        cfg,
        commands: Default::default(),
        rollouts: Default::default(),
        metrics: Default::default(),
        guard: Arc::new(crate::guard::Guard::new(Default::default())),
        notifier: Default::default(),
        leadership: None,
        started_ms: 0,
        logs: Default::default(),
    });
    let got = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=n {
        let host = format!("web-{i}");
        app.fleet.add(record(&host, "role=web"));
        let (tx, mut rx) = mpsc::channel::<Box<pb::CoordinatorMessage>>(64);
        app.fleet
            .session_opened(
                &host,
                &format!("serial-{host}"),
                SessionHandle {
                    id: format!("s-{host}"),
                    tx,
                    cancel: CancellationToken::new(),
                },
                HelloInfo {
                    capabilities: cutover_common::compat::current(),
                    newest_epoch: 0,
                    agent_version: cutover_common::VERSION.into(),
                    agent_labels: Default::default(),
                    boot_id: "b".into(),
                    facts: Default::default(),
                    address: "198.18.0.1".into(),
                },
                0,
            )
            .unwrap();
        let (app2, got2, answer) = (app.clone(), got.clone(), answer.clone());
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Some(pb::coordinator_message::Body::Command(cmd)) = m.body else {
                    continue;
                };
                got2.lock()
                    .unwrap()
                    .push((host.clone(), cmd.command_id.clone()));
                let Some((ok, failure)) = answer(&host, &cmd) else {
                    continue;
                };
                let r = pb::CommandResult {
                    command_id: cmd.command_id.clone(),
                    deployment_id: cmd.deployment_id.clone(),
                    ok,
                    message: if ok {
                        "done".into()
                    } else {
                        "it went wrong".into()
                    },
                    service: "web".into(),
                    failure: Failure::to_wire(failure) as i32,
                    ..Default::default()
                };
                crate::grpc::agent::record_result(&app2, &host, r).await;
            }
        });
    }
    Fake {
        app,
        got,
        _dir: dir,
    }
}

const SPEC: &str = r#"service = "web"
[run]
command = ["bin/web"]
[targets]
selector = "role=web"
[swap]
min_ready = "1s"
[strategy]
kind = "rolling"
max_unavailable = 1
healthy_deadline = "1h"
progress_deadline = "2h"
"#;

fn job(spec: &str, version: &str) -> Job {
    Job::new(
        spec,
        "web.toml",
        version,
        "http://artifacts.test/web.tar",
        &"ab".repeat(32),
    )
    .unwrap()
}

/// Submits `version` and follows it to its end.
async fn deploy(f: &Fake, spec: &str, version: &str) -> Rollout {
    let (rec, _) = submit(&f.app, job(spec, version), Submission::default())
        .await
        .unwrap();
    let mut w = f.app.rollouts.watch(&rec.id).expect("running");
    loop {
        if w.borrow().phase.is_terminal() {
            return w.borrow().clone();
        }
        if w.changed().await.is_err() {
            return w.borrow().clone();
        }
    }
}

fn always_ok() -> Answer {
    Arc::new(|_, _| Some((true, None)))
}

#[tokio::test(start_paused = true)]
async fn a_rolling_rollout_stages_everywhere_then_swaps_one_host_at_a_time_and_records_each_command()
 {
    let f = fleet(3, always_ok());
    let r = deploy(&f, SPEC, "2").await;
    assert_eq!(r.phase, engine::Phase::Succeeded, "{:?}", r.notes);
    let got = f.got.lock().unwrap().clone();
    // Each host: its staging, then its activation; all stagings first.
    let distinct: Vec<&(String, String)> = got
        .iter()
        .enumerate()
        .filter(|(i, c)| !got[..*i].contains(c))
        .map(|(_, c)| c)
        .collect();
    let kinds: Vec<&str> = distinct
        .iter()
        .map(|(_, id)| id.split('-').nth(1).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "stage", "stage", "stage", "activate", "activate", "activate"
        ],
        "{distinct:?}"
    );
    // One command path: every command the rollout sent is recorded with
    // its deployment and its result, like an operator's.
    let id = r.id.clone();
    let rows: Vec<(String, String, bool)> = f
        .app
        .store
        .call(move |c| {
            use crate::store::Db;
            c.rows(
                "SELECT kind, sent_by, ok FROM commands WHERE deployment_id = ?1 ORDER BY id",
                crate::store::db::vals![id],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(_, by, ok)| by == &format!("deployment {}", r.id) && *ok),
        "{rows:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_that_never_answers_its_swap_is_failed_at_the_healthy_deadline_and_rolled_back() {
    // web-2 stages, then never answers its activation.
    let answer: Answer = Arc::new(|host, cmd| {
        let silent = host == "web-2" && matches!(cmd.kind, Some(pb::command::Kind::Activate(_)));
        (!silent).then_some((true, None))
    });
    let f = fleet(3, answer);
    let spec = SPEC.replace("healthy_deadline = \"1h\"", "healthy_deadline = \"2m\"");
    let started = tokio::time::Instant::now();
    let r = deploy(&f, &spec, "2").await;
    assert!(
        matches!(r.phase, engine::Phase::RolledBack { .. }),
        "{:?}",
        r.phase
    );
    // Paused time: two minutes passed for the rollout, none for the test.
    assert!(started.elapsed() >= Duration::from_secs(120));
    assert!(
        r.notes.iter().any(|n| n
            .message
            .contains("web-2: not healthy within the healthy deadline")),
        "{:?}",
        r.notes
    );
    // web-1 had swapped: it was sent back; web-3 was never touched.
    let got = f.got.lock().unwrap().clone();
    let sent = |host: &str, kind: &str| {
        got.iter()
            .any(|(h, id)| h == host && id.split('-').nth(1) == Some(kind))
    };
    assert!(sent("web-1", "revert"), "{got:?}");
    assert!(!sent("web-3", "activate"), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn a_transient_staging_failure_is_sent_again_under_a_new_id_and_the_rollout_goes_on() {
    let tries = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let t2 = tries.clone();
    // web-1's first staging fails as unavailable (the artifact server was
    // down); its second succeeds.
    let answer: Answer = Arc::new(move |host, cmd| {
        if host == "web-1" && matches!(cmd.kind, Some(pb::command::Kind::Stage(_))) {
            let mut t = t2.lock().unwrap();
            let n = t.entry(cmd.command_id.clone()).or_default();
            *n += 1;
            if t.len() == 1 {
                return Some((false, Some(Failure::Unavailable)));
            }
        }
        Some((true, None))
    });
    let f = fleet(2, answer);
    let r = deploy(&f, SPEC, "2").await;
    assert_eq!(r.phase, engine::Phase::Succeeded, "{:?}", r.notes);
    let ids: Vec<String> = tries.lock().unwrap().keys().cloned().collect();
    assert_eq!(ids.len(), 2, "two tries, two ids: {ids:?}");
}

#[tokio::test(start_paused = true)]
async fn an_operator_hears_the_state_their_pause_and_resume_led_to() {
    // web-2 holds its activation until the test has paused the rollout.
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g2 = gate.clone();
    let answer: Answer = Arc::new(move |host, cmd| {
        let held = host == "web-1"
            && matches!(cmd.kind, Some(pb::command::Kind::Activate(_)))
            && !g2.load(std::sync::atomic::Ordering::SeqCst);
        (!held).then_some((true, None))
    });
    let f = fleet(2, answer);
    let (rec, _) = submit(&f.app, job(SPEC, "2"), Submission::default())
        .await
        .unwrap();
    let mut w = f.app.rollouts.watch(&rec.id).unwrap();
    while !matches!(w.borrow().phase, engine::Phase::Activating { .. }) {
        w.changed().await.unwrap();
    }
    let after = f
        .app
        .rollouts
        .ask(&rec.id, Event::Pause)
        .unwrap()
        .await
        .unwrap();
    assert!(after.paused, "the reply is the state after the pause");
    assert!(after.notes.iter().any(|n| n.message.starts_with("paused")));
    // Let web-1 finish: the paused rollout starts no new batch.
    gate.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let now = w.borrow().clone();
    assert!(now.held_batch.is_some() || now.paused, "{:?}", now.phase);
    assert!(
        !f.got
            .lock()
            .unwrap()
            .iter()
            .any(|(h, id)| h == "web-2" && id.contains("-activate-")),
        "no new batch while paused"
    );
    let resumed = f
        .app
        .rollouts
        .ask(&rec.id, Event::Resume)
        .unwrap()
        .await
        .unwrap();
    assert!(!resumed.paused);
    while !w.borrow().phase.is_terminal() {
        w.changed().await.unwrap();
    }
    assert_eq!(w.borrow().phase, engine::Phase::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_host_stored_ready_whose_agent_has_not_reconnected_is_named_as_such() {
    let f = fleet(1, always_ok());
    // As loaded after a coordinator restart: stored ready, no session.
    let mut r = record("web-2", "role=web");
    r.state = "ready".into();
    r.last_seen = Some(cutover_common::time::now_ms());
    f.app.fleet.add(r);
    let c = candidates(&f.app, "web");
    let web2 = c.iter().find(|c| c.host == "web-2").unwrap();
    assert!(!web2.ready);
    assert_eq!(
        web2.unready.as_deref(),
        Some("not connected yet (no session since the coordinator started)")
    );
    assert!(c.iter().find(|c| c.host == "web-1").unwrap().ready);
}

#[test]
fn an_environment_holds_a_deployment_in_a_freeze_and_outside_its_windows() {
    use crate::config::{EnvironmentPolicy, Freeze};
    let t = |s: &str| cutover_common::time::to_unix_ms(humantime::parse_rfc3339(s).unwrap());
    let p = EnvironmentPolicy {
        approval: false,
        windows: vec!["mon-fri 09:00-16:00".into()],
        freezes: vec![Freeze {
            from: "2026-12-20T00:00:00Z".into(),
            until: "2027-01-04T00:00:00Z".into(),
            reason: "year end".into(),
        }],
    };
    // Monday 7 December 2026, 10:00: open.
    assert!(check_environment("production", &p, t("2026-12-07T10:00:00Z")).is_ok());
    // Monday, 17:00: outside the windows; the next opens Tuesday 09:00.
    let e = check_environment("production", &p, t("2026-12-07T17:00:00Z")).unwrap_err();
    assert!(
        e.to_string()
            .contains("deploy windows of environment `production`")
            && e.to_string().contains("2026-12-08T09:00:00Z"),
        "{e}"
    );
    // In the freeze, even inside a window; its end is not.
    let e = check_environment("production", &p, t("2026-12-21T10:00:00Z")).unwrap_err();
    assert!(
        e.to_string()
            .contains("frozen until 2027-01-04T00:00:00Z: year end"),
        "{e}"
    );
    assert!(check_environment("production", &p, t("2027-01-04T10:00:00Z")).is_ok());
}
