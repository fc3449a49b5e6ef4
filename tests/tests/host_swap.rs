//! The host runtime end to end: a real agent swaps the demo service from
//! version to version under continuous load, through commands sent by an
//! operator via the coordinator, with no refused connection and no failed
//! request; broken versions never take over; rollback needs no download.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cutover_tests::load::{self, Load, Outcome};
use cutover_tests::release::{
    self, Control, activate, demo_spec, demo_tarball, free_port, rollback, stage,
};
use cutover_tests::{Cluster, CoordinatorOptions, poll};

struct Host {
    cluster: Cluster,
    control: Control,
    port: u16,
    artifact: release::Artifact,
}

fn host() -> Host {
    let mut cluster = Cluster::start(CoordinatorOptions::default()).unwrap();
    cluster.add_agent("web-1", "role=web", "").unwrap();
    cluster.wait_state("web-1", "ready", Duration::from_secs(20));
    let control = Control::connect(&cluster);
    let artifact = demo_tarball(cluster.dir.path(), "demo.tar");
    Host {
        cluster,
        control,
        port: free_port(),
        artifact,
    }
}

impl Host {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stages and activates version `v` with extra demo-service flags.
    fn deploy(&mut self, v: u32, extra: &[&str]) -> cutover_proto::v1::CommandResult {
        let spec = demo_spec("web", self.port, &v.to_string(), extra);
        let rel = format!("v{v}");
        let r = self.control.send(
            "web-1",
            stage(
                &format!("stage-{v}"),
                &rel,
                &v.to_string(),
                &self.artifact,
                &spec,
            ),
        );
        assert!(r.ok, "staging v{v} failed: {}", r.message);
        self.control
            .send("web-1", activate(&format!("activate-{v}"), "web", &rel))
    }
}

/// Asserts no request failed and prints the tally.
fn assert_clean(records: &[load::Record], what: &str) {
    let c = load::counts(records);
    eprintln!("{what}: {c:?}");
    let bad: Vec<_> = records
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Ok { .. }))
        .take(5)
        .collect();
    assert_eq!(
        c.failed(),
        0,
        "{what}: failed requests, first ones: {bad:#?}"
    );
    assert!(
        c.ok > 100,
        "{what}: too little load to mean anything: {c:?}"
    );
}

#[test]
fn twenty_handover_swaps_under_load_fail_no_request() {
    let mut h = host();
    let r = h.deploy(1, &[]);
    assert!(r.ok, "{}", r.message);
    let load = Load::start(h.addr(), 4, 2);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });

    // After each activation returns, only that version may answer.
    let mut swapped_at = vec![(Instant::now(), 1u32)];
    for v in 2..=21 {
        let r = h.deploy(v, &[]);
        assert!(r.ok, "swap to v{v} failed: {}", r.message);
        assert_eq!(r.active_release, format!("v{v}"));
        swapped_at.push((Instant::now(), v));
    }
    let before = load.count();
    poll(
        "more load after the last swap",
        Duration::from_secs(10),
        || (load.count() > before + 50).then_some(()),
    );
    let records = load.stop();
    assert_clean(&records, "20 handover swaps");

    // Every response came from a version that should serve it: never one
    // older than the version whose activation had finished when the
    // request started.
    for rec in &records {
        let Outcome::Ok { version } = &rec.outcome else {
            continue;
        };
        let v: u32 = version.parse().expect("numeric version");
        let floor = swapped_at
            .iter()
            .filter(|(t, _)| *t <= rec.started)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(1);
        assert!(
            v >= floor,
            "v{v} answered a request started after v{floor} was active"
        );
    }
    let versions: std::collections::BTreeSet<String> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ok { version } => Some(version.clone()),
            _ => None,
        })
        .collect();
    assert!(versions.contains("21"));

    // The host reports what runs, and `current`/`previous` say the same.
    let hostv = h.cluster.host("web-1").unwrap();
    let svc = &hostv["services"][0];
    assert_eq!(svc["active_release"], "v21");
    assert_eq!(svc["previous_release"], "v20");
    let svc_dir = h.cluster.agent("web-1").state_dir.join("services/web");
    assert_eq!(
        std::fs::read_link(svc_dir.join("current")).unwrap(),
        std::path::Path::new("releases/v21")
    );
    assert_eq!(
        std::fs::read_link(svc_dir.join("previous")).unwrap(),
        std::path::Path::new("releases/v20")
    );
    // Only the newest releases are kept.
    let kept = std::fs::read_dir(svc_dir.join("releases"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(kept, 5);
}

#[test]
fn negative_control_restart_mode_without_a_load_balancer_does_fail_requests() {
    // The same load against an app that binds its own socket and is
    // restarted (stop, then start): the counter must see the gap.
    let mut h = host();
    let port = h.port;
    let listen = format!("127.0.0.1:{port}");
    let spec_for = |v: u32| {
        let mut s = demo_spec("web", port, &v.to_string(), &["--listen", &listen]);
        s.swap.mode = cutover_common::service::SwapMode::Restart;
        s.listen.clear();
        s.probes.readiness = None;
        s
    };
    let deploy = |h: &mut Host, v: u32| {
        let spec = spec_for(v);
        let rel = format!("v{v}");
        assert!(
            h.control
                .send(
                    "web-1",
                    stage(&format!("s{v}"), &rel, "x", &h.artifact, &spec)
                )
                .ok
        );
        h.control
            .send("web-1", activate(&format!("a{v}"), "web", &rel))
    };
    assert!(deploy(&mut h, 1).ok);
    let load = Load::start(h.addr(), 2, 2);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    for v in 2..=4 {
        let r = deploy(&mut h, v);
        assert!(r.ok, "{}", r.message);
    }
    let records = load.stop();
    let c = load::counts(&records);
    eprintln!("restart mode: {c:?}");
    assert!(
        c.refused + c.reset > 0,
        "restart mode must show failures, or the counter is broken: {c:?}"
    );
}

#[test]
fn a_version_that_crashes_never_gets_ready_or_fails_liveness_never_takes_over() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let load = Load::start(h.addr(), 3, 1);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });

    let r = h.deploy(2, &["--crash-on-start"]);
    assert!(!r.ok);
    assert!(r.message.contains("exited with status 3"), "{}", r.message);
    assert_eq!(r.active_release, "v1");

    let r = h.deploy(3, &["--never-ready"]);
    assert!(!r.ok);
    assert!(r.message.contains("not ready within"), "{}", r.message);
    assert_eq!(r.active_release, "v1");

    // Liveness: /healthz turns bad 200 ms after start, during the bake. The
    // probe is aimed at this instance's own port, not the shared socket.
    let own = free_port();
    let own_addr = format!("127.0.0.1:{own}");
    let spec = {
        let mut s = demo_spec(
            "web",
            h.port,
            "4",
            &[
                "--unhealthy-after-ms",
                "200",
                "--instance-listen",
                &own_addr,
            ],
        );
        s.swap.min_ready = Duration::from_secs(2);
        s.probes.liveness = Some(
            cutover_common::service::parse_toml(&format!(
                "service = \"web\"\n[run]\ncommand = [\"x\"]\n[probes.liveness]\nhttp = {{ port = {own}, path = \"/healthz\" }}\ninterval = \"100ms\"\nfailure_threshold = 2\n"
            ))
            .unwrap()
            .probes
            .liveness
            .unwrap(),
        );
        s
    };
    assert!(
        h.control
            .send("web-1", stage("stage-4", "v4", "4", &h.artifact, &spec))
            .ok
    );
    let r = h.control.send("web-1", activate("activate-4", "web", "v4"));
    assert!(!r.ok);
    assert!(r.message.contains("liveness"), "{}", r.message);
    assert_eq!(r.active_release, "v1");

    let records = load.stop();
    assert_clean(&records, "three bad versions");
    assert!(
        records.iter().all(|r| matches!(&r.outcome, Outcome::Ok { version } if version == "1" || version == "3" || version == "4")),
        "only v1 (and the briefly started v3/v4, which serve correctly while being judged) may answer"
    );
    // The same command delivered again is answered from the journal, not re-run.
    let again = h.control.send("web-1", activate("activate-4", "web", "v4"));
    assert_eq!(again.message, r.message);
    assert_eq!(again.finished_at_ms, r.finished_at_ms);
}

#[test]
fn rollback_activates_the_previous_release_without_downloading_it() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    assert!(h.deploy(2, &[]).ok);
    // The artifact is gone: a rollback that downloaded would fail.
    std::fs::remove_file(&h.artifact.path).unwrap();
    let load = Load::start(h.addr(), 2, 1);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    let r = h.control.send("web-1", rollback("rb-1", "web"));
    assert!(r.ok, "{}", r.message);
    assert_eq!(r.active_release, "v1");
    assert_eq!(r.previous_release, "v2");
    let before = load.count();
    poll("load after rollback", Duration::from_secs(10), || {
        (load.count() > before + 50).then_some(())
    });
    let records = load.stop();
    assert_clean(&records, "rollback");
    let last = records.iter().rev().find_map(|r| match &r.outcome {
        Outcome::Ok { version } => Some(version.clone()),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some("1"));
}

#[test]
fn the_same_command_delivered_twice_is_applied_once() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let spec = demo_spec("web", h.port, "2", &[]);
    assert!(
        h.control
            .send("web-1", stage("st-2", "v2", "2", &h.artifact, &spec))
            .ok
    );
    let first = h.control.send("web-1", activate("dup-1", "web", "v2"));
    assert!(first.ok, "{}", first.message);
    let pid = |h: &Host| -> u64 {
        poll("health report with a pid", Duration::from_secs(10), || {
            let v = h.cluster.host("web-1")?;
            let s = v["services"][0].clone();
            (s["active_release"] == "v2" && s["pid"].as_u64().unwrap_or(0) > 0)
                .then(|| s["pid"].as_u64().unwrap())
        })
    };
    let pid_before = pid(&h);
    let second = h.control.send("web-1", activate("dup-1", "web", "v2"));
    assert_eq!(
        second, first,
        "a repeated command_id gets the recorded result"
    );
    assert_eq!(pid(&h), pid_before, "no second swap happened");

    // The app runs at the priority the agent was started with (this
    // test's), the agent 5 below it whenever a thread here can go down
    // and back up again (root: always), as the agent tries at start.
    let nice = |pid: u64| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    };
    let started_at = nice(u64::from(std::process::id()));
    let agent = h.cluster.agent("web-1").proc.as_ref().unwrap();
    let agent_nice = nice(u64::from(agent.child.id()));
    assert_eq!(nice(pid_before), started_at, "the app's priority");
    let lowered = (started_at + 5).min(19);
    let can_go_back = std::thread::spawn(move || {
        use rustix::process::setpriority_process;
        setpriority_process(None, lowered).is_ok() && setpriority_process(None, started_at).is_ok()
    })
    .join()
    .unwrap();
    let want = if can_go_back && lowered > started_at {
        lowered
    } else {
        started_at
    };
    assert_eq!(agent_nice, want, "the agent's priority");
}

#[test]
fn malicious_or_corrupt_artifacts_are_refused_and_change_nothing() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let spec = demo_spec("web", h.port, "2", &[]);
    // A checksum mismatch.
    let mut wrong = h.artifact.clone();
    wrong.sha256 = "0".repeat(64);
    let r = h
        .control
        .send("web-1", stage("bad-sum", "v2", "2", &wrong, &spec));
    assert!(!r.ok);
    assert!(r.message.contains("checksum mismatch"), "{}", r.message);
    // A tarball escaping with `..`.
    let evil = h.cluster.dir.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(Vec::new());
        let mut hd = tar::Header::new_gnu();
        let name = b"../../../../escaped";
        hd.as_old_mut().name[..name.len()].copy_from_slice(name);
        hd.set_size(1);
        hd.set_mode(0o644);
        hd.set_cksum();
        b.append(&hd, &b"x"[..]).unwrap();
        std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
    }
    let bytes = std::fs::read(&evil).unwrap();
    let a = release::Artifact {
        url: format!("file://{}", evil.display()),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        path: evil.clone(),
    };
    let r = h
        .control
        .send("web-1", stage("bad-tar", "v3", "3", &a, &spec));
    assert!(!r.ok);
    assert!(r.message.contains("`..`"), "{}", r.message);
    let agent_dir = h.cluster.agent("web-1").state_dir.clone();
    assert!(!agent_dir.join("services/web/releases/v3").exists());
    assert!(!agent_dir.join("services/escaped").exists() && !agent_dir.join("escaped").exists());
    // The active release is untouched and serves.
    let r = h
        .control
        .send("web-1", activate("act-1-again", "web", "v1"));
    assert!(
        r.ok && r.message.contains("already active"),
        "{}",
        r.message
    );
}

#[test]
fn reuseport_mode_swaps_apps_that_bind_their_own_socket() {
    let mut h = host();
    let listen = format!("127.0.0.1:{}", h.port);
    let spec_for = |port: u16, v: u32| {
        let mut s = demo_spec(
            "web",
            port,
            &v.to_string(),
            &["--listen", &listen, "--reuseport"],
        );
        s.swap.mode = cutover_common::service::SwapMode::Reuseport;
        s
    };
    let deploy = |h: &mut Host, v: u32| {
        let spec = spec_for(h.port, v);
        let rel = format!("v{v}");
        assert!(
            h.control
                .send(
                    "web-1",
                    stage(&format!("s{v}"), &rel, "x", &h.artifact, &spec)
                )
                .ok
        );
        h.control
            .send("web-1", activate(&format!("a{v}"), "web", &rel))
    };
    assert!(deploy(&mut h, 1).ok);
    let load = Load::start(h.addr(), 3, 2);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    for v in 2..=6 {
        let r = deploy(&mut h, v);
        assert!(r.ok, "{}", r.message);
    }
    let before = load.count();
    poll("load after the swaps", Duration::from_secs(10), || {
        (load.count() > before + 50).then_some(())
    });
    let records = load.stop();
    let c = load::counts(&records);
    eprintln!("reuseport swaps: {c:?}");
    assert_eq!(
        c.refused, 0,
        "reuseport keeps a socket bound throughout: {c:?}"
    );
    let last = records.iter().rev().find_map(|r| match &r.outcome {
        Outcome::Ok { version } => Some(version.clone()),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some("6"));
}

#[test]
fn a_socket_an_old_app_shut_down_does_not_stop_the_new_version_serving() {
    let mut h = host();
    assert!(h.deploy(1, &["--shutdown-listener"]).ok);
    let r = h.deploy(2, &[]);
    assert!(r.ok, "{}", r.message);
    // The old app called shutdown() on its socket on its way out. The new
    // instance has a socket of its own (steered handover), so it serves
    // on; where the socket was shared, the agent would notice, listen
    // again and replace the instance that shared it.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let got = loop {
        if let Some(r) = cutover_tests::http_get(&format!("127.0.0.1:{}", h.port), "/")
            .filter(|(s, _)| *s == 200)
        {
            break r;
        }
        if std::time::Instant::now() > deadline {
            let log = h.cluster.agent("web-1").proc.as_ref().unwrap().log_text();
            let ss = std::process::Command::new("ss")
                .args(["-ltnp"])
                .output()
                .unwrap();
            let curl = std::process::Command::new("curl")
                .args(["-sv", "-m", "3", &format!("http://127.0.0.1:{}/", h.port)])
                .output()
                .unwrap();
            let logs: Vec<String> =
                std::fs::read_dir(h.cluster.agent("web-1").state_dir.join("services/web/logs"))
                    .unwrap()
                    .flatten()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.path().display(),
                            std::fs::read_to_string(e.path()).unwrap_or_default()
                        )
                    })
                    .collect();
            panic!(
                "v2 never answered on the repaired socket (port {})\n{logs:#?}\n{log}\n{}\n{}",
                h.port,
                String::from_utf8_lossy(&ss.stdout),
                String::from_utf8_lossy(&curl.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(got.1.contains("version=2"), "{}", got.1);
    let log = h.cluster.agent("web-1").proc.as_ref().unwrap().log_text();
    if cutover_tests::swaps_are_steered() {
        assert!(
            !log.contains("shares the serving socket"),
            "the swap was not steered: {log}"
        );
    } else {
        // Shared: the agent repaired the socket the old app broke.
        assert!(log.contains("socket no longer listens; repairing"), "{log}");
    }
}

#[test]
fn artifacts_download_over_http_and_an_interrupted_download_resumes() {
    let mut h = host();
    let server =
        cutover_tests::artifacts::ArtifactServer::start(h.cluster.dir.path().to_path_buf());
    let mut artifact = h.artifact.clone();
    artifact.url = server.url("demo.tar");
    let spec = demo_spec("web", h.port, "1", &[]);
    // The first download is cut off halfway: a transient failure, so the
    // agent tries again by itself, keeping the part; the retry asks only
    // for the rest, and the checksum of the whole holds.
    let size = std::fs::metadata(&h.artifact.path).unwrap().len();
    server
        .cut_next_after
        .store(size / 2, std::sync::atomic::Ordering::SeqCst);
    let mut progress = Vec::new();
    let r = h
        .control
        .send_with("web-1", stage("http-1", "v1", "1", &artifact, &spec), |p| {
            progress.push(p.message.clone())
        });
    assert!(r.ok, "{}", r.message);
    assert!(
        progress
            .iter()
            .any(|m| m.contains("failed (attempt 1 of 4)")),
        "{progress:?}"
    );
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs[1].contains(&format!("range=Some({})", size / 2)),
        "{reqs:?}"
    );
    assert!(h.control.send("web-1", activate("http-a", "web", "v1")).ok);
    assert_eq!(
        cutover_tests::http_get(&format!("127.0.0.1:{}", h.port), "/")
            .unwrap()
            .0,
        200
    );
}

#[test]
fn hooks_run_in_order_and_their_output_comes_back_in_the_result() {
    let mut h = host();
    let mut spec = demo_spec("web", h.port, "1", &[]);
    let hook = |cmd: &str| {
        Some(cutover_common::service::Hook {
            command: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            timeout: Duration::from_secs(5),
        })
    };
    spec.hooks.before_start = hook("echo before $CUTOVER_RELEASE");
    spec.hooks.validate = hook("echo validating; test -x bin/demo-service");
    spec.hooks.after_start = hook("echo after");
    assert!(
        h.control
            .send("web-1", stage("st", "v1", "1", &h.artifact, &spec))
            .ok
    );
    let r = h.control.send("web-1", activate("ac", "web", "v1"));
    assert!(r.ok, "{}", r.message);
    let names: Vec<&str> = r.hooks.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["before_start", "validate", "after_start"]);
    assert!(r.hooks[0].output.contains("before v1"), "{:?}", r.hooks[0]);
    assert!(r.hooks.iter().all(|x| x.ok));
    // A failing validate hook keeps the old version.
    let mut bad = demo_spec("web", h.port, "2", &[]);
    bad.hooks.validate = hook("echo nope >&2; exit 4");
    assert!(
        h.control
            .send("web-1", stage("st2", "v2", "2", &h.artifact, &bad))
            .ok
    );
    let r = h.control.send("web-1", activate("ac2", "web", "v2"));
    assert!(!r.ok);
    assert_eq!(r.message, "validate hook failed");
    assert_eq!(r.hooks[0].status, "exit 4");
    assert!(r.hooks[0].output.contains("nope"));
    assert_eq!(r.active_release, "v1");
}

#[test]
fn a_startup_probe_must_pass_before_readiness_counts() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let mut spec = demo_spec("web", h.port, "2", &[]);
    spec.swap.ready_timeout = Duration::from_secs(2);
    spec.probes.startup = cutover_common::service::parse_toml(
        "service = \"web\"\n[run]\ncommand = [\"x\"]\n[probes.startup]\nexec = { command = [\"/bin/sh\", \"-c\", \"test -e started\"] }\ninterval = \"100ms\"\n",
    )
    .unwrap()
    .probes
    .startup;
    assert!(
        h.control
            .send("web-1", stage("st2", "v2", "2", &h.artifact, &spec))
            .ok
    );
    // The app says READY=1, but the startup check never passes.
    let r = h.control.send("web-1", activate("ac2", "web", "v2"));
    assert!(!r.ok);
    assert!(r.message.contains("not ready within"), "{}", r.message);
    assert_eq!(r.active_release, "v1");
}

#[test]
fn a_swap_that_cannot_be_recorded_starts_nothing_and_the_old_release_keeps_serving() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let state = h
        .cluster
        .dir
        .path()
        .join("agents/web-1/services/web/state.json");
    let saved = std::fs::read(&state).unwrap();
    // state.json can no longer be replaced (as on a full disk): a
    // directory that is not empty stands where it goes.
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir_all(state.join("x")).unwrap();
    let load = Load::start(h.addr(), 2, 1);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    let r = h.deploy(2, &[]);
    assert!(!r.ok, "{r:?}");
    assert!(
        r.message.contains("cannot record the swap"),
        "{}",
        r.message
    );
    let before = load.count();
    poll(
        "load after the refused swap",
        Duration::from_secs(10),
        || (load.count() > before + 50).then_some(()),
    );
    let records = load.stop();
    assert_clean(&records, "a swap that could not be recorded");
    assert!(
        records
            .iter()
            .all(|r| matches!(&r.outcome, Outcome::Ok { version } if version == "1")),
        "v2 never served"
    );
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, saved).unwrap();
}

#[test]
fn a_failed_swap_to_a_moved_listener_keeps_the_old_socket_and_leaves_no_new_one() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let load = Load::start(h.addr(), 2, 1);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    // v2 moves the listener to another port, and crashes on start.
    let (old_port, moved) = (h.port, free_port());
    h.port = moved;
    let r = h.deploy(2, &["--crash-on-start"]);
    h.port = old_port;
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.active_release, "v1");
    let before = load.count();
    poll(
        "load after the failed swap",
        Duration::from_secs(10),
        || (load.count() > before + 50).then_some(()),
    );
    assert_clean(&load.stop(), "a failed swap to a moved listener");
    // Nothing listens on the new port: clients are refused, not queued
    // on a socket nobody accepts from.
    let e = std::net::TcpStream::connect(("127.0.0.1", moved)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
}

#[test]
fn a_rollback_gives_up_the_swap_in_progress_instead_of_waiting_for_it() {
    let mut h = host();
    assert!(h.deploy(1, &[]).ok);
    let mut spec = demo_spec("web", h.port, "2", &["--never-ready"]);
    spec.swap.ready_timeout = Duration::from_secs(60);
    let staged = h
        .control
        .send("web-1", stage("stage-2", "v2", "2", &h.artifact, &spec));
    assert!(staged.ok, "{}", staged.message);
    // The activation of a release that never gets ready, in the background.
    let mut second = Control::connect(&h.cluster);
    let (started_tx, started) = std::sync::mpsc::channel();
    let swap = std::thread::spawn(move || {
        second.send_with("web-1", activate("activate-2", "web", "v2"), |p| {
            if p.phase == "starting" {
                let _ = started_tx.send(());
            }
        })
    });
    started
        .recv_timeout(Duration::from_secs(30))
        .expect("the new instance started");
    let mut back = rollback("rollback-2", "web");
    if let Some(cutover_proto::v1::command::Kind::Rollback(r)) = &mut back.kind {
        r.to_release_id = "v1".into();
    }
    let r = h.control.send("web-1", back);
    assert!(r.ok, "{}", r.message);
    assert_eq!(r.active_release, "v1");
    let given_up = swap.join().unwrap();
    assert!(!given_up.ok);
    assert!(
        given_up
            .message
            .contains("given up: a rollback was asked for"),
        "the swap was not given up: {}",
        given_up.message
    );
    assert_eq!(given_up.active_release, "v1");
}
