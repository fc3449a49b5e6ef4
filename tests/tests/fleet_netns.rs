//! The whole job on something that looks like a fleet: every host in its
//! own network namespace with its own address (198.18.x.y), a real agent,
//! the demo service on the same port everywhere, clients sending requests to
//! every host throughout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cutover_tests::load::{self, Load};
use cutover_tests::netns::NetFleet;
use cutover_tests::release::{Artifact, demo_tarball};
use cutover_tests::{Cluster, CoordinatorOptions, poll};

fn fleet(n: usize) -> (NetFleet, Cluster, Artifact) {
    let net = NetFleet::create(n).unwrap_or_else(|e| {
        panic!("network namespaces are unavailable ({e}): these scenarios need root and `ip netns`")
    });
    eprintln!(
        "mode: network namespaces, hosts on 198.18.{}.0/24",
        net.subnet
    );
    let mut c = Cluster::start(CoordinatorOptions {
        listen_ip: Some(net.gateway()),
        host_timeout: "3s",
        heartbeat_interval: "500ms",
        ..Default::default()
    })
    .unwrap();
    for (i, h) in net.hosts.iter().enumerate() {
        c.add_agent_in(&format!("web-{}", i + 1), "role=web", "", Some(&h.netns))
            .unwrap();
    }
    for i in 1..=n {
        c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(20));
    }
    // Each agent runs in its own namespace, and dials from its own address.
    for (i, h) in net.hosts.iter().enumerate() {
        let host = c.host(&format!("web-{}", i + 1)).unwrap();
        assert_eq!(host["address"], h.ip.as_str(), "{host:#}");
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    (net, c, a)
}

fn spec(c: &Cluster, version: &str, strategy: &str) -> PathBuf {
    let text = format!(
        r#"service = "web"
[run]
command = ["bin/demo-service", "--app-version", "{version}"]
[[listen]]
name = "http"
address = "0.0.0.0:8080"
[swap]
min_ready = "300ms"
grace = "10s"
ready_timeout = "3s"
[strategy]
{strategy}
[targets]
selector = "role=web"
"#
    );
    let p = c.dir.path().join(format!("web-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn deploy(
    c: &Cluster,
    spec: &std::path::Path,
    version: &str,
    a: &Artifact,
) -> (cutover_tests::Run, i32) {
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(cutover_tests::bin("cutover"))
        .args([
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
            "--watch",
        ])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (out.into(), code)
}

fn releases(c: &Cluster) -> Vec<(String, String)> {
    c.hosts()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["services"][0]["active_release"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn rolling_six_namespaced_hosts_two_at_a_time_fails_no_request() {
    let (net, c, a) = fleet(6);
    let (r, code) = deploy(&c, &spec(&c, "1", "kind = \"recreate\""), "1", &a);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    // Clients on every host, on the same port everywhere.
    let loads: Vec<Load> = net
        .hosts
        .iter()
        .map(|h| Load::start(SocketAddr::new(h.ip.parse().unwrap(), 8080), 1, 1))
        .collect();
    poll("load on every host", Duration::from_secs(10), || {
        loads.iter().all(|l| l.count() > 20).then_some(())
    });
    let (r, code) = deploy(
        &c,
        &spec(&c, "2", "kind = \"rolling\"\nmax_unavailable = 2"),
        "2",
        &a,
    );
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("batch 3/3"), "{}", r.stdout);
    let counts: Vec<load::Counts> = loads.into_iter().map(|l| load::counts(&l.stop())).collect();
    eprintln!("per host: {counts:?}");
    for (i, k) in counts.iter().enumerate() {
        assert_eq!(k.failed(), 0, "web-{}: {k:?}", i + 1);
        assert!(k.ok > 20, "web-{}: too little load: {k:?}", i + 1);
    }
    poll("every host on v2", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|(_, r)| r.starts_with("2-"))
            .then_some(())
    });
    let h = c.cutover(&["history", "web", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v[0]["outcome"], "succeeded");
    assert_eq!(v[0]["version"], "2");
}

#[test]
fn a_partitioned_host_is_lost_the_rollout_ends_by_policy_and_the_host_rejoins_with_the_truth() {
    let (net, c, a) = fleet(4);
    let (r, code) = deploy(&c, &spec(&c, "1", "kind = \"recreate\""), "1", &a);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    // Start a rollout, then cut web-4 (the last batch) off the network.
    for i in 1..=4 {
        c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(20));
    }
    let v2 = spec(
        &c,
        "2",
        "kind = \"rolling\"\nmax_unavailable = 1\nhealthy_deadline = \"5s\"\n[rollback]\nmax_failed = 1",
    );
    let started = Instant::now();
    let r = c.cutover(&[
        "deploy",
        v2.to_str().unwrap(),
        "--version",
        "2",
        "--artifact",
        &a.url,
        "--sha256",
        &a.sha256,
    ]);
    assert!(r.ok, "{}", r.stderr);
    net.partition(3);
    c.wait_state("web-4", "lost", Duration::from_secs(20));
    let w = c.cutover(&["watch", "d2"]);
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
    net.heal(3);
    c.wait_state("web-4", "ready", Duration::from_secs(30));
    let truth = poll(
        "web-4 to report its service",
        Duration::from_secs(10),
        || {
            releases(&c)
                .into_iter()
                .find(|(h, r)| h == "web-4" && !r.is_empty())
        },
    );
    assert!(
        truth.1.starts_with("1-"),
        "web-4 never got v2 and says so: {truth:?}"
    );
    // And it answers on its own address.
    let got = cutover_tests::http_get(&format!("{}:8080", net.hosts[3].ip), "/").unwrap();
    assert!(got.1.contains("version=1"), "{got:?}");
}

#[test]
fn a_canary_with_a_raised_error_ratio_is_rolled_back_and_only_it_answered_badly() {
    let (net, c, a) = fleet(4);
    let with_probe = |version: &str, extra: &str, strategy: &str| {
        let p = spec(&c, version, strategy);
        let text = std::fs::read_to_string(&p).unwrap().replace(
            &format!("\"--app-version\", \"{version}\"]"),
            &format!("\"--app-version\", \"{version}\"{extra}]\n[probes.liveness]\nhttp = {{ listener = \"http\", path = \"/\" }}\ninterval = \"50ms\"\nfailure_threshold = 100000"),
        );
        std::fs::write(&p, text).unwrap();
        p
    };
    let (r, code) = deploy(&c, &with_probe("2", "", "kind = \"recreate\""), "2", &a);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let loads: Vec<Load> = net
        .hosts
        .iter()
        .map(|h| Load::start(SocketAddr::new(h.ip.parse().unwrap(), 8080), 1, 1))
        .collect();
    poll("load on every host", Duration::from_secs(10), || {
        loads.iter().all(|l| l.count() > 20).then_some(())
    });
    let canary = "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"3s\", analysis = true }, { hosts = \"100%\" } ]";
    let (r, code) = deploy(
        &c,
        &with_probe("3", ", \"--error-ratio\", \"0.3\"", canary),
        "3",
        &a,
    );
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Fail"), "{}", r.stdout);
    let records: Vec<load::Record> = loads.into_iter().flat_map(|l| l.stop()).collect();
    let k = load::counts(&records);
    eprintln!("canary under load: {k:?}");
    assert_eq!((k.refused, k.reset, k.timeout), (0, 0, 0), "{k:?}");
    // The only failed requests are those v3 itself answered badly.
    assert!(
        k.non_2xx > 0,
        "the bad canary did answer some requests: {k:?}"
    );
    for rec in &records {
        if let load::Outcome::Status { version, .. } = &rec.outcome {
            assert_eq!(version, "3", "a non-2xx from another version: {rec:?}");
        }
    }
    poll("every host back on v2", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|(_, r)| r.starts_with("2-"))
            .then_some(())
    });
}
