//! Health judged with a real app server: gunicorn from Debian's packages,
//! serving every socket in `LISTEN_FDS` with its own workers, on a fleet of
//! network-namespace hosts under load. Its `/healthz` is what the probes
//! ask, on the service's shared listener: the answer must come from the
//! instance being judged, never from the old one beside it.
//!
//! Skipped (and says so) where gunicorn is not installed; `.ci/run`
//! installs it and makes a missing one a failure.

use std::time::Duration;

use cutover_tests::fleet::TestFleet;
use cutover_tests::haproxy::Haproxy;
use cutover_tests::load::{self, Outcome, Record};
use cutover_tests::release::Artifact;
use cutover_tests::{apps, http_get, real_component};

/// A WSGI app answering `/healthz` with `health`, after `boot` seconds of
/// start-up in each worker (an import that takes time), naming its version
/// in `x-version`.
fn app(version: &str, health: u16, boot: f32) -> String {
    format!(
        r#"import time

VERSION = "{version}"
HEALTH = {health}
time.sleep({boot})


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/healthz":
        status = "200 OK" if HEALTH == 200 else "%d Unavailable" % HEALTH
        body = b"ok\n" if HEALTH == 200 else b"down\n"
    else:
        status, body = "200 OK", ("hello from %s\n" % VERSION).encode()
    start_response(status, [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("x-version", VERSION),
    ])
    return [body]
"#
    )
}

/// Liveness on `/healthz` too, as in the reference example.
const LIVENESS: &str = "[probes.liveness]\nhttp = { listener = \"http\", path = \"/healthz\" }\ninterval = \"200ms\"\nfailure_threshold = 3\n";

/// A spec shaped like the reference example: HTTP readiness and liveness
/// probes on `/healthz` of the service's own listener, two workers.
fn spec(f: &TestFleet, version: &str, strategy: &str) -> std::path::PathBuf {
    apps::gunicorn_spec_with(f, version, 2, strategy, LIVENESS)
}

fn release(f: &TestFleet, version: &str, health: u16, boot: f32) -> Artifact {
    f.publish(
        &format!("gunicorn-{version}.tar"),
        &[("app.py", &app(version, health, boot), 0o644)],
    )
}

fn deploy(f: &TestFleet, version: &str, art: &Artifact, strategy: &str) -> (String, i32) {
    let (r, code) = f.deploy_artifact(&spec(f, version, strategy), version, art);
    (format!("{}\n{}", r.stdout, r.stderr), code)
}

fn answered_by(records: &[Record], version: &str) -> usize {
    records
        .iter()
        .filter(|r| {
            matches!(&r.outcome, Outcome::Ok { version: v } | Outcome::Status { version: v, .. } if v == version)
        })
        .count()
}

#[test]
fn a_gunicorn_release_whose_health_endpoint_fails_is_rolled_back_every_time() {
    if !real_component("gunicorn") {
        return;
    }
    let f = TestFleet::builder().hosts(3).start();
    let good = release(&f, "1", 200, 0.0);
    let (out, code) = deploy(&f, "1", &good, "kind = \"recreate\"");
    assert_eq!(code, 0, "{out}");
    f.wait_all_on("1");
    let load = f.load();
    let rolling = "kind = \"rolling\"\nmax_unavailable = 1";
    for round in 0..5 {
        let version = format!("2.{round}");
        let bad = release(&f, &version, 503, 0.0);
        let (out, code) = deploy(&f, &version, &bad, rolling);
        assert_eq!(code, 3, "round {round}: not rolled back:\n{out}");
        // Every host back on the previous release, serving.
        f.wait_all_on("1");
        for (host, rel) in f.releases() {
            assert!(rel.starts_with("1-"), "round {round}: {host} on {rel}");
        }
    }
    let per_host = load.stop();
    let records: Vec<Record> = per_host.iter().flatten().cloned().collect();
    let k = load::counts(&records);
    let bad: usize = (0..5)
        .map(|r| answered_by(&records, &format!("2.{r}")))
        .sum();
    eprintln!("5 bad releases under load: {k:?}; {bad} client requests answered by a bad release");
    assert_eq!(k.failed(), 0, "{k:?}");
    // Clients were held back from the new instances until ready: the
    // bad releases, never ready, served nobody.
    if cutover_tests::swaps_are_steered() {
        assert_eq!(bad, 0, "client requests answered by a release never ready");
    }
    assert!(k.ok > 100, "too little load: {k:?}");
}

#[test]
fn a_gunicorn_release_that_boots_in_4s_goes_live_with_no_failed_request() {
    if !real_component("gunicorn") {
        return;
    }
    let mut f = TestFleet::builder().hosts(3).start();
    let (out, code) = deploy(&f, "1", &release(&f, "1", 200, 0.0), "kind = \"recreate\"");
    assert_eq!(code, 0, "{out}");
    f.wait_all_on("1");
    let load = f.load();
    let slow = release(&f, "2", 200, 4.0);
    let started = std::time::Instant::now();
    let (out, code) = deploy(&f, "2", &slow, "kind = \"rolling\"\nmax_unavailable = 1");
    assert_eq!(code, 0, "a slow but good release must go live:\n{out}");
    f.wait_all_on("2");
    // Each host waited for its own new workers: about 4 s a host at the
    // least, never the old instance's word for it.
    assert!(
        started.elapsed() >= Duration::from_secs(12),
        "three hosts in {:?}: judged before the new workers booted",
        started.elapsed()
    );
    let records: Vec<Record> = load.stop().into_iter().flatten().collect();
    let k = load::counts(&records);
    eprintln!("slow-booting release under load: {k:?}");
    assert_eq!(k.failed(), 0, "{k:?}");
    // Python wrote its bytecode cache into the release: not drift. A file
    // dropped there by hand is.
    let id = f.hosts[0].id.clone();
    let current = f.cluster.agent(&id).state_dir.join("services/web/current");
    assert!(
        current.join("__pycache__").is_dir(),
        "gunicorn wrote no bytecode cache"
    );
    std::fs::write(current.join("planted.sh"), "#!/bin/sh\n").unwrap();
    let drift = cutover_tests::poll(
        "the planted file seen as drift",
        Duration::from_secs(30),
        || {
            let r = f.cutover(&["drift", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
            let text = v.to_string();
            text.contains("added planted.sh").then_some(text)
        },
    );
    assert!(!drift.contains("__pycache__"), "{drift}");
    // The hosts answer as v2 now.
    for i in 0..3 {
        let (status, text) = http_get(&f.addr(i).to_string(), "/").expect("an answer");
        assert_eq!(status, 200);
        assert_eq!(text, "hello from 2\n");
    }
}

#[test]
fn behind_haproxy_a_never_ready_release_keeps_servers_up_and_does_not_succeed() {
    if !real_component("gunicorn") || !real_component("haproxy") {
        return;
    }
    let f = TestFleet::builder().hosts(3).start();
    let (out, code) = deploy(&f, "1", &release(&f, "1", 200, 0.0), "kind = \"recreate\"");
    assert_eq!(code, 0, "{out}");
    f.wait_all_on("1");
    let lb = Haproxy::start(
        &f,
        "inter 300ms fall 2 rise 2",
        "option redispatch\n  retries 2",
    );
    let clients = cutover_tests::load::Load::start(lb.addr, 2, 2);
    cutover_tests::poll("load through haproxy", Duration::from_secs(20), || {
        (clients.count() > 50).then_some(())
    });
    let never = release(&f, "2", 503, 0.0);
    let (out, code) = deploy(&f, "2", &never, "kind = \"rolling\"\nmax_unavailable = 1");
    assert_eq!(code, 3, "a never-ready release must not succeed:\n{out}");
    f.wait_all_on("1");
    let records = clients.stop();
    let k = load::counts(&records);
    eprintln!(
        "through haproxy: {k:?}; {} answered by the never-ready release",
        answered_by(&records, "2")
    );
    // HAProxy always had a server: no 503 of its own, nothing refused.
    assert_eq!(k.failed(), 0, "{k:?}");
    if cutover_tests::swaps_are_steered() {
        assert_eq!(
            answered_by(&records, "2"),
            0,
            "the never-ready release served clients"
        );
    }
    assert!(k.ok > 100, "too little load: {k:?}");
}

#[test]
fn a_canary_failing_a_fifth_of_real_requests_is_rolled_back_and_a_good_one_after_it_promoted() {
    if !real_component("gunicorn") || !cutover_tests::real_python_module("prometheus_client") {
        return;
    }
    let f = TestFleet::builder().hosts(4).start();
    let v1 = f.publish(
        "metered-1.tar",
        &[("app.py", &apps::metered_app("1", 0), 0o644)],
    );
    let (r, code) = f.deploy_artifact(
        &apps::metered_spec(&f, "1", "kind = \"recreate\""),
        "1",
        &v1,
    );
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("1");
    let load = f.load();

    // v2 fails one real request in five; its /healthz is fine, so its
    // probes see nothing wrong.
    let v2 = f.publish(
        "metered-2.tar",
        &[("app.py", &apps::metered_app("2", 5), 0o644)],
    );
    let (r, code) = f.deploy_artifact(&apps::metered_spec(&f, "2", apps::CANARY), "2", &v2);
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Fail"), "{}", r.stdout);
    let id = apps::deployment_id(&r.stdout);
    let st = f.cutover(&["status", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let verdict = &v["progress"]["analyses"][0];
    assert_eq!(verdict["verdict"], "fail", "{v:#}");
    let requests = verdict["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "request_error_ratio")
        .unwrap_or_else(|| panic!("no request metric in {verdict:#}"));
    assert_eq!(requests["verdict"], "fail", "{requests:#}");
    let canary = requests["canary"].as_f64().unwrap();
    assert!((0.15..0.25).contains(&canary), "{requests:#}");
    assert_eq!(requests["baseline"].as_f64(), Some(0.0), "{requests:#}");
    assert!(
        requests["canary_samples"].as_u64().unwrap() >= 20,
        "{requests:#}"
    );
    f.wait_all_on("1");

    // A good v3 right after: the bad release's failures on the canary host
    // are not counted against it.
    let v3 = f.publish(
        "metered-3.tar",
        &[("app.py", &apps::metered_app("3", 0), 0o644)],
    );
    let (r, code) = f.deploy_artifact(&apps::metered_spec(&f, "3", apps::CANARY), "3", &v3);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Pass"), "{}", r.stdout);
    f.wait_all_on("3");

    let records: Vec<Record> = load.stop().into_iter().flatten().collect();
    let k = load::counts(&records);
    eprintln!("bad then good canary under load: {k:?}");
    assert_eq!((k.refused, k.reset, k.timeout), (0, 0, 0), "{k:?}");
    for rec in &records {
        if let Outcome::Status { version, .. } = &rec.outcome {
            assert_eq!(
                version, "2",
                "a failed request from another version: {rec:?}"
            );
        }
    }
}

/// A real Prometheus (Debian's) scraping every host's app every second,
/// each target labelled with its host id. Stopped when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(f: &TestFleet) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = cutover_tests::release::free_port();
        let targets: String = (0..f.hosts.len())
            .map(|i| {
                format!(
                    "      - targets: ['{}']\n        labels: {{ host: '{}' }}\n",
                    f.addr(i),
                    f.hosts[i].id
                )
            })
            .collect();
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: web\n    static_configs:\n{targets}"
        );
        std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let hosts = f.hosts.len();
        cutover_tests::poll(
            "prometheus scraping every host",
            Duration::from_secs(60),
            || {
                let (status, body) =
                    http_get(&format!("127.0.0.1:{port}"), "/api/v1/query?query=sum(up)")?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let up: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
                (status == 200 && up as usize == hosts).then_some(())
            },
        );
        Prometheus {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_canary_judged_by_queries_to_a_real_prometheus_is_rolled_back_when_it_fails_real_requests() {
    if !real_component("gunicorn")
        || !real_component("prometheus")
        || !cutover_tests::real_python_module("prometheus_client")
    {
        return;
    }
    let f = TestFleet::builder().hosts(4).start();
    let v1 = f.publish(
        "metered-1.tar",
        &[("app.py", &apps::metered_app("1", 0), 0o644)],
    );
    let recreate = apps::gunicorn_spec(&f, "1", "kind = \"recreate\"", "");
    let (r, code) = f.deploy_artifact(&recreate, "1", &v1);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    f.wait_all_on("1");
    let prom = Prometheus::start(&f);
    let load = f.load();
    // No [metrics]: the agents judge probes only, Prometheus the requests.
    let analysis = format!(
        r#"[analysis.prometheus]
url = "{}"
[[analysis.prometheus.queries]]
name = "error_ratio"
query = '(sum(rate(http_requests_total{{host=~"{{{{hosts}}}}",code=~"5.."}}[{{{{window}}}}])) or vector(0)) / sum(rate(http_requests_total{{host=~"{{{{hosts}}}}"}}[{{{{window}}}}]))'
max_increase = 0.05
"#,
        prom.url
    );
    let canary = "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"8s\", analysis = true }, { hosts = \"100%\" } ]";
    let v2 = f.publish(
        "metered-2.tar",
        &[("app.py", &apps::metered_app("2", 5), 0o644)],
    );
    let (r, code) = f.deploy_artifact(&apps::gunicorn_spec(&f, "2", canary, &analysis), "2", &v2);
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    let id = apps::deployment_id(&r.stdout);
    let st = f.cutover(&["status", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let verdict = &v["progress"]["analyses"][0];
    let m = verdict["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "prometheus:error_ratio")
        .unwrap_or_else(|| panic!("no Prometheus metric in {verdict:#}"));
    assert_eq!(m["verdict"], "fail", "{m:#}");
    let c = m["canary"].as_f64().unwrap();
    assert!((0.1..0.3).contains(&c), "{m:#}");
    assert_eq!(m["baseline"].as_f64(), Some(0.0), "{m:#}");
    f.wait_all_on("1");

    let v3 = f.publish(
        "metered-3.tar",
        &[("app.py", &apps::metered_app("3", 0), 0o644)],
    );
    let (r, code) = f.deploy_artifact(&apps::gunicorn_spec(&f, "3", canary, &analysis), "3", &v3);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Pass"), "{}", r.stdout);
    let records: Vec<Record> = load.stop().into_iter().flatten().collect();
    let k = load::counts(&records);
    eprintln!("canaries judged by Prometheus under load: {k:?}");
    assert_eq!((k.refused, k.reset, k.timeout), (0, 0, 0), "{k:?}");
}
