//! The agent killed with SIGKILL in the middle of a swap: the app keeps
//! serving (0 failed requests), and the restarted agent re-attaches to the
//! running instances, takes the listening socket back, finishes or undoes
//! the half-done swap, finishes the command from its journal, and reports
//! the truth.

use std::net::SocketAddr;
use std::time::Duration;

use cutover_tests::load::{self, Load, Outcome};
use cutover_tests::release::{Control, activate, demo_spec, demo_tarball, free_port, stage};
use cutover_tests::{Cluster, CoordinatorOptions, poll};

fn kill_during(phase: &str, old_flags: &[&str], new_min_ready: Duration) {
    let mut cluster = Cluster::start(CoordinatorOptions::default()).unwrap();
    cluster.add_agent("web-1", "", "").unwrap();
    cluster.wait_state("web-1", "ready", Duration::from_secs(20));
    let mut control = Control::connect(&cluster);
    let artifact = demo_tarball(cluster.dir.path(), "demo.tar");
    let port = free_port();
    let v1 = demo_spec("web", port, "1", old_flags);
    assert!(
        control
            .send("web-1", stage("s1", "v1", "1", &artifact, &v1))
            .ok
    );
    let r = control.send("web-1", activate("a1", "web", "v1"));
    assert!(r.ok, "{}", r.message);
    let mut v2 = demo_spec("web", port, "2", &[]);
    v2.swap.min_ready = new_min_ready;
    assert!(
        control
            .send("web-1", stage("s2", "v2", "2", &artifact, &v2))
            .ok
    );

    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], port)), 4, 2);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });

    let mut killed = false;
    let result = control.send_with("web-1", activate("a2", "web", "v2"), |p| {
        if p.phase == phase && !killed {
            killed = true;
            cluster.agent("web-1").proc.as_mut().unwrap().kill();
            cluster.start_agent("web-1").unwrap();
        }
    });
    assert!(killed, "never saw phase {phase}");
    assert!(
        result.ok,
        "the interrupted swap did not finish: {}",
        result.message
    );
    assert_eq!(result.active_release, "v2");

    let before = load.count();
    poll("load after the swap", Duration::from_secs(10), || {
        (load.count() > before + 100).then_some(())
    });
    let records = load.stop();
    let c = load::counts(&records);
    eprintln!("agent killed during {phase}: {c:?}");
    let bad: Vec<_> = records
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Ok { .. }))
        .take(5)
        .collect();
    assert_eq!(c.failed(), 0, "failed requests: {bad:#?}");
    let last = records.iter().rev().find_map(|r| match &r.outcome {
        Outcome::Ok { version } => Some(version.clone()),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some("2"));

    // The restarted agent reports the truth, and only v2 runs.
    let host = poll(
        "the host to report v2 serving",
        Duration::from_secs(15),
        || {
            let h = cluster.host("web-1")?;
            let s = h["services"][0].clone();
            (s["active_release"] == "v2" && s["status"] == "serving").then_some(h)
        },
    );
    let pid = host["services"][0]["pid"].as_u64().unwrap();
    let log = cluster.agent("web-1").proc.as_ref().unwrap().log_text();
    assert!(log.contains("took the listening socket back"), "{log}");
    let running: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/environ"))
                .map(|env| {
                    env.contains("CUTOVER_SERVICE=web\0")
                        && env.contains(cluster.dir.path().to_str().unwrap())
                })
                .unwrap_or(false)
                && std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| !s.contains(") Z "))
                    .unwrap_or(false)
        })
        .collect();
    assert_eq!(
        running,
        vec![pid as u32],
        "exactly the reported instance runs"
    );
}

#[test]
fn agent_killed_while_the_new_instance_bakes_undoes_and_finishes_the_swap() {
    kill_during("starting", &[], Duration::from_secs(2));
}

#[test]
fn agent_killed_while_stopping_the_old_instance_finishes_the_swap() {
    kill_during(
        "stopping_old",
        &["--stop-delay-ms", "1500"],
        Duration::from_millis(300),
    );
}
