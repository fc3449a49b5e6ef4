//! The whole job on something that looks like a fleet: every host with its
//! own address (its own network namespace where the machine allows it), a
//! real agent, the demo service on the same port everywhere, released as a
//! tarball over HTTP, and clients sending requests to every host throughout.
//! Each scenario is one strategy or one failure Cutover claims to handle.

use std::time::{Duration, Instant};

use cutover_tests::fleet::{Mode, TestFleet};
use cutover_tests::load::{self, Counts, Outcome, Record};
use cutover_tests::{http_get, poll, processes_under};

/// A liveness probe of every instance through its listener, so that the
/// agents report answers (and their errors) for canary analysis. The high
/// threshold keeps a flaky answer from restarting an instance.
const PROBED: &str = "[probes.liveness]\nhttp = { listener = \"http\", path = \"/\" }\ninterval = \"50ms\"\nfailure_threshold = 100000";

fn tally(per_host: &[Vec<Record>]) -> Vec<Counts> {
    let counts: Vec<Counts> = per_host.iter().map(|r| load::counts(r)).collect();
    eprintln!("requests per host: {counts:?}");
    counts
}

fn assert_none_failed(per_host: &[Vec<Record>]) {
    for (i, k) in tally(per_host).iter().enumerate() {
        assert_eq!(k.failed(), 0, "web-{}: {k:?}", i + 1);
        assert!(k.ok > 20, "web-{}: too little load: {k:?}", i + 1);
    }
}

fn history(f: &TestFleet) -> serde_json::Value {
    let h = f.cutover(&["history", "web", "-o", "json"]);
    assert!(h.ok, "{}", h.stderr);
    serde_json::from_str(&h.stdout).unwrap()
}

fn deploy_ok(f: &TestFleet, version: &str, strategy: &str, extra: &str) -> String {
    let (r, code) = f.deploy(&f.spec(version, &[], strategy, extra), version);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    r.stdout
}

#[test]
fn rolling_six_hosts_two_at_a_time_fails_no_request() {
    let f = TestFleet::builder().hosts(6).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let load = f.load();
    let out = deploy_ok(&f, "2", "kind = \"rolling\"\nmax_unavailable = 2", "");
    assert!(out.contains("batch 3/3"), "{out}");
    assert_none_failed(&load.stop());
    f.wait_all_on("2");
    let v = history(&f);
    assert_eq!(v[0]["phase"], "succeeded");
    assert_eq!(v[0]["version"], "2");
}

#[test]
fn a_canary_with_a_raised_error_ratio_is_rolled_back_and_only_it_answered_badly() {
    let f = TestFleet::builder().hosts(4).start();
    deploy_ok(&f, "2", "kind = \"recreate\"", PROBED);
    let load = f.load();
    let canary = "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"3s\", analysis = true }, { hosts = \"100%\" } ]";
    let v3 = f.spec("3", &["--error-ratio", "0.3"], canary, PROBED);
    let (r, code) = f.deploy(&v3, "3");
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Fail"), "{}", r.stdout);
    let records: Vec<Record> = load.stop().into_iter().flatten().collect();
    let k = load::counts(&records);
    eprintln!("canary under load: {k:?}");
    assert_eq!((k.refused, k.reset, k.timeout), (0, 0, 0), "{k:?}");
    // The only failed requests are those v3 itself answered badly.
    assert!(
        k.non_2xx > 0,
        "the bad canary did answer some requests: {k:?}"
    );
    for rec in &records {
        if let Outcome::Status { version, .. } = &rec.outcome {
            assert_eq!(version, "3", "a non-2xx from another version: {rec:?}");
        }
    }
    f.wait_all_on("2");
    assert_eq!(history(&f)[0]["phase"], "rolled_back");
}

#[test]
fn a_version_that_crashes_on_start_is_rolled_back_and_no_request_fails() {
    let f = TestFleet::builder().hosts(4).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let load = f.load();
    let v4 = f.spec(
        "4",
        &["--crash-on-start"],
        "kind = \"rolling\"\nmax_unavailable = 2",
        "",
    );
    let (r, code) = f.deploy(&v4, "4");
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("finished: rolled_back"), "{}", r.stdout);
    assert_none_failed(&load.stop());
    f.wait_all_on("1");
    let v = history(&f);
    assert_eq!(v[0]["version"], "4");
    assert_eq!(v[0]["phase"], "rolled_back");
}

#[test]
fn a_version_whose_health_endpoint_fails_serves_no_client_and_is_rolled_back() {
    let f = TestFleet::builder().hosts(3).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let load = f.load();
    // Accepts and answers `/` like any other version; `/healthz` answers
    // 503, on the service's own listener.
    let readiness = "[probes.readiness]\nhttp = { listener = \"http\", path = \"/healthz\" }\ninterval = \"100ms\"\nfailure_threshold = 2";
    let v2 = f.spec(
        "2",
        &["--never-ready"],
        "kind = \"rolling\"\nmax_unavailable = 1",
        readiness,
    );
    let (r, code) = f.deploy(&v2, "2");
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    let per_host = load.stop();
    assert_none_failed(&per_host);
    let by_v2 = per_host
        .iter()
        .flatten()
        .filter(|r| matches!(&r.outcome, Outcome::Ok { version } if version == "2"))
        .count();
    if cutover_tests::swaps_are_steered() {
        assert_eq!(by_v2, 0, "a version never ready answered clients");
    }
    f.wait_all_on("1");
}

#[test]
fn blue_green_switches_under_load_and_switches_back_instantly() {
    let f = TestFleet::builder()
        .hosts(4)
        .labels(0, "role=web,color=blue")
        .labels(1, "role=web,color=blue")
        .labels(2, "role=web,color=green")
        .labels(3, "role=web,color=green")
        .start();
    // The switch command a load balancer integration would run: here it
    // records which group is live.
    let dir = f.cluster.dir.path();
    let live = dir.join("live-group");
    let script = dir.join("switch.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CUTOVER_LIVE_GROUP\" > {}\n",
            live.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bg = format!(
        "kind = \"blue_green\"\nswitch = {{ command = [\"{}\"] }}",
        script.display()
    );
    let group = || std::fs::read_to_string(&live).unwrap().trim().to_string();
    deploy_ok(&f, "1", &bg, "");
    assert_eq!(group(), "blue");
    let out = deploy_ok(&f, "2", &bg, "");
    assert!(out.contains("traffic switched to group green"), "{out}");
    assert_eq!(group(), "green");
    // Both groups run now (blue kept on v1 for an instant switch back):
    // clients on every host while v3 replaces v1 on blue.
    let load = f.load();
    let out = deploy_ok(&f, "3", &bg, "");
    assert!(out.contains("activating web-1, web-2"), "{out}");
    assert_eq!(group(), "blue");
    let pids_before: Vec<Vec<i32>> = f
        .cluster
        .agents
        .iter()
        .map(|a| processes_under(&a.state_dir))
        .collect();
    // Switching back starts and stops nothing.
    let started = Instant::now();
    let r = f.cutover(&["rollback", "web"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("switched back to group green"),
        "{}",
        r.stdout
    );
    eprintln!("switched back in {:?}", started.elapsed());
    assert_eq!(group(), "green");
    let pids_after: Vec<Vec<i32>> = f
        .cluster
        .agents
        .iter()
        .map(|a| processes_under(&a.state_dir))
        .collect();
    assert_eq!(
        pids_before, pids_after,
        "no instance was started or stopped"
    );
    assert_none_failed(&load.stop());
    let by_host = f.releases();
    for (h, rel) in by_host {
        let want = if h == "web-1" || h == "web-2" {
            "3-"
        } else {
            "2-"
        };
        assert!(rel.starts_with(want), "{h} runs {rel}");
    }
}

#[test]
fn recreate_never_serves_two_versions_at_once_loopback_mode() {
    // This scenario runs in loopback mode on every machine, so the
    // fallback for machines without network namespaces is always tested.
    let f = TestFleet::builder().hosts(3).mode(Mode::Loopback).start();
    assert!(f.hosts.iter().all(|h| h.ip.is_loopback()));
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    // Each host answers on its own address, not a neighbour's.
    for i in 0..3 {
        let got = http_get(&f.addr(i).to_string(), "/").unwrap();
        assert!(got.1.contains("version=1"), "{got:?}");
    }
    let load = f.load();
    let deployed = Instant::now();
    let out = deploy_ok(&f, "2", "kind = \"recreate\"", "");
    let done = Instant::now();
    assert!(out.contains("succeeded"), "{out}");
    // Keep the clients on a little after the deployment: all must answer.
    poll(
        "answers after the deployment",
        Duration::from_secs(10),
        || (Instant::now() > done + Duration::from_millis(500)).then_some(()),
    );
    let per_host = load.stop();
    // The agents held the sockets while nothing ran: clients waited
    // instead of failing.
    assert_none_failed(&per_host);
    let all: Vec<&Record> = per_host.iter().flatten().collect();
    let last_v1 = all
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Ok { version } if version == "1"))
        .map(|r| r.ended)
        .max()
        .unwrap();
    let first_v2 = all
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Ok { version } if version == "2"))
        .map(|r| r.ended)
        .min()
        .expect("v2 answered");
    assert!(
        last_v1 < first_v2,
        "v1 answered {:?} after v2 first did",
        last_v1 - first_v2
    );
    assert!(
        last_v1 > deployed,
        "v1 served until the deployment stopped it"
    );
    // Nothing fails once the deployment is over.
    for r in all.iter().filter(|r| r.started > done) {
        assert!(
            matches!(&r.outcome, Outcome::Ok { version } if version == "2"),
            "{r:?}"
        );
    }
    f.wait_all_on("2");
}

#[test]
fn the_coordinator_killed_mid_rollout_resumes_no_host_swaps_twice_no_request_fails() {
    let mut f = TestFleet::builder().hosts(3).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let load = f.load();
    let v2 = f.spec(
        "2",
        &["--ready-delay-ms", "700"],
        "kind = \"rolling\"\nmax_unavailable = 1",
        "",
    );
    f.submit(&v2, "2");
    poll("the second batch to start", Duration::from_secs(30), || {
        let s = f.cutover(&["status", "d2", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
        (v["progress"]["batch"].as_u64() == Some(2)).then_some(())
    });
    f.cluster.coordinator.as_mut().unwrap().kill();
    f.cluster.start_coordinator().unwrap();
    // Each agent resumes its TLS session with a ticket the killed
    // coordinator issued (keys on disk), rather than a full handshake.
    poll(
        "every agent to resume its TLS session",
        Duration::from_secs(30),
        || {
            let resumed = f
                .cluster
                .metric("cutover_tls_handshakes_total{kind=\"resumed\"}")?;
            (resumed >= 3.0).then_some(())
        },
    );
    let w = f.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    assert!(w.stdout.contains("succeeded"), "{}", w.stdout);
    assert_none_failed(&load.stop());
    f.wait_all_on("2");
    // Each agent started the v2 release exactly once.
    for a in &f.cluster.agents {
        let log = a.proc.as_ref().unwrap().log_text();
        let starts = log
            .lines()
            .filter(|l| l.contains("started 2-") && l.contains("waiting until healthy"))
            .count();
        assert_eq!(starts, 1, "{} started v2 {starts} times:\n{log}", a.host_id);
    }
}

#[test]
fn an_agent_killed_in_the_middle_of_its_swap_finishes_it_and_no_request_fails() {
    let mut f = TestFleet::builder().hosts(3).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let load = f.load();
    let v2 = f.spec(
        "2",
        &["--ready-delay-ms", "2000"],
        "kind = \"rolling\"\nmax_unavailable = 1",
        "",
    );
    f.submit(&v2, "2");
    // Mid swap on web-1 (the first batch): the new instance runs beside
    // the old one and is not ready yet.
    let web1 = f.cluster.agents[0].state_dir.clone();
    poll(
        "web-1 in the middle of its swap",
        Duration::from_secs(30),
        || (processes_under(&web1).len() == 2).then_some(()),
    );
    f.cluster.agent("web-1").proc.as_mut().unwrap().kill();
    eprintln!("killed web-1's agent mid swap");
    f.cluster.start_agent("web-1").unwrap();
    let w = f.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    assert!(w.stdout.contains("succeeded"), "{}", w.stdout);
    let per_host = load.stop();
    assert_none_failed(&per_host);
    f.wait_all_on("2");
    // Exactly one instance runs on web-1 afterwards, and it is v2.
    poll("one instance on web-1", Duration::from_secs(10), || {
        (processes_under(&web1).len() == 1).then_some(())
    });
    let got = http_get(&f.addr(0).to_string(), "/").unwrap();
    assert!(got.1.contains("version=2"), "{got:?}");
}

#[test]
fn a_partitioned_host_is_lost_the_rollout_ends_by_policy_and_the_host_rejoins_with_the_truth() {
    let mut f = TestFleet::builder().hosts(4).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    let v2 = f.spec(
        "2",
        &[],
        "kind = \"rolling\"\nmax_unavailable = 1\nhealthy_deadline = \"5s\"",
        "[rollback]\nmax_failed = 1",
    );
    let started = Instant::now();
    f.submit(&v2, "2");
    // web-4, in the last batch, is cut off while the rollout runs.
    f.partition(3);
    f.cluster
        .wait_state("web-4", "lost", Duration::from_secs(20));
    let w = f.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    // Handled by the policy (one failure tolerated), ended by its deadlines.
    assert!(w.stdout.contains("on 2, 1 failed"), "{}", w.stdout);
    assert!(w.stdout.contains("succeeded"), "{}", w.stdout);
    assert!(
        w.stdout.contains("web-4: lost") || w.stdout.contains("web-4: not healthy within"),
        "{}",
        w.stdout
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the rollout ended by its rules, not by waiting"
    );
    // Back on the network: ready again, still on what it really runs.
    f.heal(3);
    f.cluster
        .wait_state("web-4", "ready", Duration::from_secs(30));
    let truth = poll(
        "web-4 to report its service",
        Duration::from_secs(10),
        || {
            f.releases()
                .into_iter()
                .find(|(h, r)| h == "web-4" && !r.is_empty())
        },
    );
    assert!(
        truth.1.starts_with("1-"),
        "web-4 never got v2 and says so: {truth:?}"
    );
    // And it answers on its own address.
    let got = http_get(&f.addr(3).to_string(), "/").unwrap();
    assert!(got.1.contains("version=1"), "{got:?}");
}

#[test]
fn a_host_drained_for_maintenance_leaves_the_load_balancer_first_and_comes_back() {
    let f = TestFleet::builder().hosts(3).start();
    deploy_ok(
        &f,
        "1",
        "kind = \"recreate\"",
        // Long enough for a slow load balancer (this test, on a loaded
        // machine) to notice; the drain goes on as soon as the last
        // connection closes anyway.
        "[drain]\nderegistration_delay = \"10s\"",
    );
    let lb = f.readiness(1);
    poll(
        "web-2 in the load balancer",
        Duration::from_secs(10),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 200),
    );
    let mut load = f.load();
    // Drain web-2 and stop its service for maintenance. The test is the
    // load balancer: it stops sending to web-2 once the readiness endpoint
    // fails, as a real one would after its health check.
    let drain = {
        let args: Vec<String> = ["drain", "web-2", "--stop"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = f.cluster.operator_env("admin");
        let home = f.cluster.dir.path().to_path_buf();
        std::thread::spawn(move || {
            std::process::Command::new(cutover_tests::bin("cutover"))
                .args(&args)
                .env("HOME", home)
                .envs(env)
                .output()
                .unwrap()
        })
    };
    poll(
        "web-2 out of the load balancer",
        Duration::from_secs(10),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 503),
    );
    let web2 = load.stop_host(1);
    let out = drain.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // While web-2 was in the balancer, it answered everything.
    let k = load::counts(&web2);
    assert_eq!(k.failed(), 0, "web-2 before leaving the balancer: {k:?}");
    // Stopped now, and `cutover hosts` says so.
    poll("web-2 stopped", Duration::from_secs(10), || {
        (processes_under(&f.cluster.agents[1].state_dir).is_empty()).then_some(())
    });
    // The coordinator hears it with the next health report.
    poll(
        "cutover hosts to show web-2 drained and stopped",
        Duration::from_secs(15),
        || {
            let h = f.cluster.host("web-2")?;
            (h["services"][0]["drained"] == true && h["services"][0]["status"] == "stopped")
                .then_some(())
        },
    );
    // Maintenance over: back in the balancer, serving v1.
    let r = f.cutover(&["undrain", "web-2"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    poll(
        "web-2 back in the balancer",
        Duration::from_secs(20),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 200),
    );
    let got = http_get(&f.addr(1).to_string(), "/").unwrap();
    assert!(got.1.contains("version=1"), "{got:?}");
    // The other hosts served throughout.
    let per_host = load.stop();
    for (i, k) in tally(&per_host).iter().enumerate() {
        assert_eq!(k.failed(), 0, "web-{}: {k:?}", i + 1);
    }
    assert!(per_host[0].len() > 20 && per_host[2].len() > 20);
}

#[test]
fn a_rollback_reaches_a_host_stopped_for_maintenance_without_starting_it() {
    let f = TestFleet::builder().hosts(2).start();
    deploy_ok(&f, "1", "kind = \"recreate\"", "");
    deploy_ok(&f, "2", "kind = \"rolling\"\nmax_unavailable = 1", "");
    let r = f.cutover(&["drain", "web-2", "--stop"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    poll("web-2 stopped", Duration::from_secs(10), || {
        processes_under(&f.cluster.agents[1].state_dir)
            .is_empty()
            .then_some(())
    });
    // v2 is bad: rolled back everywhere, the host under maintenance too,
    // but that one is not started.
    let r = f.cutover(&["rollback", "web"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("1");
    assert!(
        processes_under(&f.cluster.agents[1].state_dir).is_empty(),
        "the rollback started a host stopped for maintenance"
    );
    // Maintenance over: undrain starts the release rolled back to.
    let r = f.cutover(&["undrain", "web-2"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("undrained: 1-"), "{}", r.stdout);
    let got = http_get(&f.addr(1).to_string(), "/").unwrap();
    assert!(got.1.contains("version=1"), "{got:?}");
}

#[test]
fn an_artifact_server_down_for_longer_than_the_agents_own_retries_delays_the_rollout_but_fails_no_host()
 {
    let f = TestFleet::builder().hosts(2).start();
    // Every download attempt of both hosts' first staging gets a 503 (4
    // attempts each, ~13 s): each reports the failure as transient, and
    // the rollout tries its staging again.
    f.artifacts()
        .unavailable_for
        .store(8, std::sync::atomic::Ordering::SeqCst);
    let out = deploy_ok(&f, "1", "kind = \"rolling\"\nmax_unavailable = 1", "");
    assert!(out.contains("trying again (1 of 2)"), "{out}");
    f.wait_all_on("1");
    let v = history(&f);
    assert_eq!(v[0]["phase"], "succeeded", "{v}");
    let requests = f.artifacts().requests.lock().unwrap().len();
    assert!(requests >= 10, "8 refused, then one per host: {requests}");
}
