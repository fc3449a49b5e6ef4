//! Operating a service on a host: drain and undrain through the CLI with
//! the load balancers' readiness endpoint following along, restarts of a
//! crashed instance, and liveness replacements that start the new
//! instance before stopping the hung one.

use std::net::SocketAddr;
use std::time::Duration;

use cutover_tests::load::{self, Load, Outcome};
use cutover_tests::release::{Control, activate, demo_spec, demo_tarball, free_port, stage};
use cutover_tests::{Cluster, CoordinatorOptions, http_get, poll};

fn one_host() -> (Cluster, Control, u16, cutover_tests::release::Artifact) {
    let mut cluster = Cluster::start(CoordinatorOptions::default()).unwrap();
    cluster.add_agent("web-1", "role=web", "").unwrap();
    cluster.wait_state("web-1", "ready", Duration::from_secs(20));
    let control = Control::connect(&cluster);
    let artifact = demo_tarball(cluster.dir.path(), "demo.tar");
    (cluster, control, free_port(), artifact)
}

fn service_of(c: &Cluster) -> Option<serde_json::Value> {
    c.host("web-1").map(|h| h["services"][0].clone())
}

/// Runs `cutover ARGS` (a drain) while checking the readiness endpoint
/// every 200 ms, as a load balancer does; returns its output (which must
/// be a success) and the "down" answers the checks got.
fn drain_checked(c: &Cluster, lb: &str, args: &[&str]) -> (String, usize) {
    let drain = {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = c.operator_env("admin");
        let home = c.dir.path().to_path_buf();
        std::thread::spawn(move || {
            std::process::Command::new(cutover_tests::bin("cutover"))
                .args(&args)
                .env("HOME", home)
                .envs(env)
                .output()
                .unwrap()
        })
    };
    let mut downs = 0;
    while !drain.is_finished() {
        if http_get(lb, "/ready/web").is_some_and(|(s, _)| s == 503) {
            downs += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = drain.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, downs)
}

#[test]
fn a_host_drained_for_maintenance_leaves_its_load_balancer_and_comes_back() {
    let (mut c, mut control, port, artifact) = one_host();
    let spec = demo_spec("web", port, "1", &[]);
    assert!(
        control
            .send("web-1", stage("s1", "v1", "1", &artifact, &spec))
            .ok
    );
    assert!(control.send("web-1", activate("a1", "web", "v1")).ok);
    let lb = c.agent("web-1").readiness.clone().unwrap();
    poll(
        "the readiness endpoint to say serving",
        Duration::from_secs(10),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 200),
    );
    assert_eq!(http_get(&lb, "/ready/nope").unwrap().0, 404);

    // Drain and stop, through the CLI, with progress, the test checking
    // the endpoint as a balancer would.
    let (stdout, _) = drain_checked(&c, &lb, &["drain", "web-1", "--stop"]);
    assert!(
        stdout.contains("draining:") && stdout.contains("connection(s) open"),
        "{stdout}"
    );
    assert!(stdout.contains("web-1/web: ok: drained"), "{stdout}");
    let (status, body) = http_get(&lb, "/ready/web").unwrap();
    assert_eq!(status, 503, "{body}");
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        let ss = std::process::Command::new("ss")
            .args(["-ltnp"])
            .output()
            .unwrap();
        panic!(
            "a stopped service refuses connections; port {port}\n{}",
            String::from_utf8_lossy(&ss.stdout)
        );
    }
    poll(
        "the coordinator to see it drained",
        Duration::from_secs(10),
        || service_of(&c).filter(|s| s["drained"] == true),
    );

    // Undrain: started again, serving, back in the load balancer.
    let r = c.cutover(&["undrain", "web-1"]);
    assert!(r.ok, "{}", r.stderr);
    poll(
        "the readiness endpoint to say serving again",
        Duration::from_secs(10),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 200),
    );
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), "/").unwrap().0, 200);

    // A drain without stop keeps the instance serving (for the LB to move
    // traffic away at its own pace) while the endpoint fails. The test
    // checks the endpoint as a balancer would, every 200 ms, and the
    // drain ends once it has been told "down" three times.
    let (stdout, downs) = drain_checked(&c, &lb, &["drain", "web-1", "--service", "web"]);
    assert!(
        stdout.contains("balancer(s) confirmed: 127.0.0.1"),
        "{stdout}"
    );
    assert!((3..20).contains(&downs), "{downs} down answers: {stdout}");
    assert_eq!(http_get(&lb, "/ready/web").unwrap().0, 503);
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), "/").unwrap().0, 200);
    // A viewer cannot drain.
    c.issue_operator("vic", "viewer").unwrap();
    let r = c.cutover_as("vic", &["undrain", "web-1"]);
    assert!(
        !r.ok && r.stderr.contains("permission denied"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_readiness_endpoint_says_serving_throughout_a_swap_and_at_once_after_it() {
    let (mut c, mut control, port, artifact) = one_host();
    for v in ["1", "2"] {
        let spec = demo_spec("web", port, v, &[]);
        let r = control.send(
            "web-1",
            stage(&format!("s{v}"), &format!("v{v}"), v, &artifact, &spec),
        );
        assert!(r.ok, "staging v{v}: {}", r.message);
    }
    assert!(control.send("web-1", activate("a1", "web", "v1")).ok);
    let lb = c.agent("web-1").readiness.clone().unwrap();
    poll(
        "the readiness endpoint to say serving",
        Duration::from_secs(10),
        || http_get(&lb, "/ready/web").filter(|(s, _)| *s == 200),
    );
    // A load balancer checking the host while it swaps: the old instance
    // serves until the new one has proved itself, so the host never
    // leaves the pool.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (lb, stop) = (lb.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(http_get(&lb, "/ready/web"));
            }
            answers
        })
    };
    let r = control.send("web-1", activate("a2", "web", "v2"));
    assert!(r.ok, "{}", r.message);
    // The moment the swap is done, the endpoint names the new release.
    let after = http_get(&lb, "/ready/web");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = checker.join().unwrap();
    assert_eq!(
        after,
        Some((200, "serving v2\n".into())),
        "right after the swap"
    );
    let bad: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a, Some((200, _))))
        .collect();
    assert!(
        bad.is_empty() && answers.len() > 10,
        "{} of {} checks during the swap did not say serving: {:?}",
        bad.len(),
        answers.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn a_crashed_instance_is_restarted_and_queued_connections_wait_for_it() {
    let (c, mut control, port, artifact) = one_host();
    let mut spec = demo_spec("web", port, "1", &[]);
    spec.restart.backoff_initial = Duration::from_millis(100);
    assert!(
        control
            .send("web-1", stage("s1", "v1", "1", &artifact, &spec))
            .ok
    );
    assert!(control.send("web-1", activate("a1", "web", "v1")).ok);
    let first = poll("a pid", Duration::from_secs(10), || {
        service_of(&c)
            .and_then(|s| s["pid"].as_u64())
            .filter(|p| *p > 0)
    });
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], port)), 2, 2);
    poll("load to flow", Duration::from_secs(10), || {
        (load.count() > 50).then_some(())
    });
    // The app dies; the agent still holds the socket, so clients queue
    // instead of being refused while it restarts.
    std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    let second = poll("a restarted instance", Duration::from_secs(20), || {
        service_of(&c)
            .filter(|s| s["status"] == "serving")
            .and_then(|s| s["pid"].as_u64())
            .filter(|p| *p > 0 && *p != first)
    });
    assert_ne!(second, first);
    let before = load.count();
    poll("load after the restart", Duration::from_secs(10), || {
        (load.count() > before + 50).then_some(())
    });
    let records = load.stop();
    let c2 = load::counts(&records);
    eprintln!("crash and restart: {c2:?}");
    assert_eq!(
        c2.refused, 0,
        "the held socket must queue, not refuse: {c2:?}"
    );
    let restarts = service_of(&c).unwrap()["restarts"].as_u64().unwrap();
    assert!(restarts >= 1);
}

#[test]
fn a_hung_instance_failing_liveness_is_replaced_new_first_with_no_failed_request() {
    let (c, mut control, port, artifact) = one_host();
    // Healthy for 3 s, then /healthz fails (a hung app); the replacement is
    // the same release, healthy again for 3 s: enough to see one swap.
    let mut spec = demo_spec("web", port, "1", &["--unhealthy-after-ms", "4000"]);
    spec.probes.liveness = cutover_common::service::parse_toml(&format!(
        "service = \"web\"\n[run]\ncommand = [\"x\"]\n[probes.liveness]\nhttp = {{ port = {port}, path = \"/healthz\" }}\ninterval = \"200ms\"\nfailure_threshold = 2\n"
    ))
    .unwrap()
    .probes
    .liveness;
    spec.swap.min_ready = Duration::from_millis(200);
    assert!(
        control
            .send("web-1", stage("s1", "v1", "1", &artifact, &spec))
            .ok
    );
    assert!(control.send("web-1", activate("a1", "web", "v1")).ok);
    let first = poll("a pid", Duration::from_secs(10), || {
        service_of(&c)
            .and_then(|s| s["pid"].as_u64())
            .filter(|p| *p > 0)
    });
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], port)), 2, 2);
    let replaced = poll("a liveness replacement", Duration::from_secs(20), || {
        service_of(&c)
            .filter(|s| s["status"] == "serving")
            .and_then(|s| s["pid"].as_u64())
            .filter(|p| *p > 0 && *p != first)
    });
    assert_ne!(replaced, first);
    let records = load.stop();
    let n = load::counts(&records);
    eprintln!("liveness replacement: {n:?}");
    assert_eq!(
        n.failed(),
        0,
        "{:?}",
        records
            .iter()
            .find(|r| !matches!(r.outcome, Outcome::Ok { .. }))
    );
}
