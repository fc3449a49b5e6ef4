//! Rollback time: from the first failing probe of a bad version to every
//! host back on the previous release, on 6 hosts. Run with
//! `bench/rollback-time.sh`.
//!
//! Each round deploys a bad version to every host at once (a canary whose
//! one step is the whole fleet, then a bake). It passes its startup checks
//! and turns unhealthy a few seconds after it started: its `/healthz`, the
//! liveness probe, answers 503. The demo service logs the wall-clock time
//! of the first failing `/healthz` it answers, which is the first failing
//! probe. Meanwhile the benchmark asks every host `GET /` on a fresh
//! connection every few milliseconds and notes the version that answers;
//! a host is back when it answers the previous version and never the bad
//! one again.
//!
//! Target (issue 7): at most `failure_threshold x interval + 1 s`.
//!
//! `--app gunicorn` runs the same case with a real app server (Debian's
//! gunicorn, two workers) instead of the demo service: the bad release
//! fails only its HTTP health endpoint, in handover mode, and the revert's
//! instances are judged on their own answers (issue 23).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover_bench::{arg_u64, machine, write_results};
use cutover_tests::fleet::TestFleet;
use cutover_tests::http_get;

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Probe {
    interval_ms: u64,
    failure_threshold: u64,
}

/// A gunicorn app answering `version=V` on `/`, whose `/healthz` answers
/// 503 from `bad_after_ms` after it started, logging the first such
/// answer as the demo service does.
fn gunicorn_app(version: &str, bad_after_ms: Option<u64>) -> String {
    let after = bad_after_ms.map_or("None".to_string(), |ms| format!("{}", ms as f64 / 1000.0));
    format!(
        r#"import sys, threading, time

VERSION = "{version}"
BAD_AFTER = {after}
STARTED = time.time()
said = threading.Lock()
told = []


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/healthz":
        if BAD_AFTER is not None and time.time() - STARTED >= BAD_AFTER:
            with said:
                if not told:
                    told.append(1)
                    print("demo-service %s: first failing /healthz at unix_ms=%d" % (VERSION, time.time() * 1000), file=sys.stderr, flush=True)
            status, body = "503 Service Unavailable", b"down\n"
        else:
            status, body = "200 OK", b"ok\n"
    else:
        status, body = "200 OK", ("version=%s\n" % VERSION).encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#
    )
}

fn spec(
    f: &TestFleet,
    version: &str,
    bad_after_ms: Option<u64>,
    p: &Probe,
    gunicorn: bool,
) -> PathBuf {
    let bad = bad_after_ms.map_or(String::new(), |ms| {
        format!(r#", "--unhealthy-after-ms", "{ms}""#)
    });
    let command = if gunicorn {
        r#"["gunicorn", "--workers", "2", "app:app"]"#.to_string()
    } else {
        format!(r#"["bin/demo-service", "--app-version", "{version}"{bad}]"#)
    };
    let strategy = if bad_after_ms.is_some() {
        r#"kind = "canary"
steps = [{ hosts = "100%", pause = "5m" }]"#
    } else {
        r#"kind = "rolling"
max_unavailable = "100%""#
    };
    let text = format!(
        r#"service = "web"
[run]
command = {command}
[[listen]]
name = "http"
address = "0.0.0.0:{port}"
[swap]
min_ready = "500ms"
grace = "10s"
ready_timeout = "10s"
[probes.liveness]
http = {{ listener = "http", path = "/healthz" }}
interval = "{interval}ms"
failure_threshold = {threshold}
[strategy]
{strategy}
[targets]
selector = "role=web"
"#,
        port = f.port,
        interval = p.interval_ms,
        threshold = p.failure_threshold,
    );
    let path = f
        .cluster
        .dir
        .path()
        .join(format!("bench-web-{version}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Asks `addr` for its version on a fresh connection every few
/// milliseconds until `stop`; (unix ms, version) of every answer.
fn watch(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(i64, String)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some((200, body)) = http_get(&addr.to_string(), "/") {
                let v = body
                    .strip_prefix("version=")
                    .and_then(|b| b.split_whitespace().next())
                    .unwrap_or_default()
                    .to_string();
                seen.push((unix_ms(SystemTime::now()), v));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    })
}

/// The first failing `/healthz` any instance answered (unix ms), from the
/// instance logs under every agent's state directory.
fn first_failing_probe(f: &TestFleet, version: &str) -> Option<i64> {
    let needle = format!("demo-service {version}: first failing /healthz at unix_ms=");
    let mut first: Option<i64> = None;
    for a in &f.cluster.agents {
        let logs = a.state_dir.join("services/web/logs");
        for e in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines() {
                if let Some(ms) = line
                    .find(&needle)
                    .and_then(|i| line[i + needle.len()..].trim().parse::<i64>().ok())
                {
                    first = Some(first.map_or(ms, |f| f.min(ms)));
                }
            }
        }
    }
    first
}

fn main() -> anyhow::Result<()> {
    let hosts = arg_u64("--hosts", 6) as usize;
    let rounds = arg_u64("--rounds", 3);
    let probe = Probe {
        interval_ms: arg_u64("--interval-ms", 1000),
        failure_threshold: arg_u64("--failure-threshold", 3),
    };
    let bad_after_ms = arg_u64("--bad-after-ms", 3000);
    let gunicorn = cutover_bench::arg("--app").as_deref() == Some("gunicorn");
    anyhow::ensure!(
        !gunicorn || cutover_tests::real_component("gunicorn"),
        "--app gunicorn needs Debian's gunicorn"
    );
    let target_ms = (probe.failure_threshold * probe.interval_ms + 1000) as f64;
    let f = TestFleet::builder()
        .hosts(hosts)
        .host_timeout("30s")
        .start();
    println!("fleet mode: {:?}", f.mode);
    // Deploys `version` (bad from `bad_after_ms`): the demo service, or a
    // gunicorn release of its own.
    let deploy = |version: &str, bad_after_ms: Option<u64>| {
        let spec = spec(&f, version, bad_after_ms, &probe, gunicorn);
        if gunicorn {
            let art = f.publish(
                &format!("gunicorn-{version}.tar"),
                &[("app.py", &gunicorn_app(version, bad_after_ms), 0o644)],
            );
            f.deploy_artifact(&spec, version, &art)
        } else {
            f.deploy(&spec, version)
        }
    };

    let (run, code) = deploy("1", None);
    anyhow::ensure!(code == 0, "deploying v1: {}\n{}", run.stdout, run.stderr);

    let mut out = Vec::new();
    for round in 0..rounds {
        let bad = format!("2.{round}");
        let stop = Arc::new(AtomicBool::new(false));
        let watchers: Vec<_> = (0..hosts).map(|i| watch(f.addr(i), stop.clone())).collect();
        let (run, code) = deploy(&bad, Some(bad_after_ms));
        anyhow::ensure!(
            code != 0 && format!("{}{}", run.stdout, run.stderr).contains("rolled back"),
            "the bad version {bad} was not rolled back (exit {code}):\n{}\n{}",
            run.stdout,
            run.stderr
        );
        // Let the watchers see every host settle on v1.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Vec<(i64, String)>> =
            watchers.into_iter().map(|w| w.join().unwrap()).collect();

        let failed_at = first_failing_probe(&f, &bad)
            .ok_or_else(|| anyhow::anyhow!("no instance of {bad} logged a failing /healthz"))?;
        let mut back = Vec::new();
        for (i, s) in seen.iter().enumerate() {
            anyhow::ensure!(
                s.iter().any(|(_, v)| *v == bad),
                "{} never answered {bad}",
                f.hosts[i].id
            );
            let last_bad = s.iter().rposition(|(_, v)| *v == bad).unwrap();
            let (at, v) = s
                .get(last_bad + 1)
                .ok_or_else(|| anyhow::anyhow!("{} answered {bad} to the end", f.hosts[i].id))?;
            anyhow::ensure!(v == "1", "{} went on to {v}", f.hosts[i].id);
            back.push(*at);
        }
        let all_back = *back.iter().max().unwrap();
        let took = (all_back - failed_at) as f64;
        println!(
            "round {}: first failing probe to every host on v1: {took:.0} ms (target at most {target_ms:.0} ms); first host back after {:.0} ms",
            round + 1,
            (*back.iter().min().unwrap() - failed_at) as f64,
        );
        out.push(serde_json::json!({"version": bad, "rollback_ms": took,
            "first_host_back_ms": back.iter().min().unwrap() - failed_at}));
    }
    let mut v: Vec<f64> = out
        .iter()
        .map(|r| r["rollback_ms"].as_f64().unwrap())
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "median of {rounds}: {:.0} ms, worst {:.0} ms (target at most {target_ms:.0} ms)",
        v[v.len() / 2],
        v[v.len() - 1]
    );
    let p = write_results(
        if gunicorn {
            "rollback-time-gunicorn"
        } else {
            "rollback-time"
        },
        &serde_json::json!({
            "machine": machine(),
            "mode": format!("{:?}", f.mode),
            "hosts": hosts,
            "liveness": {"interval_ms": probe.interval_ms, "failure_threshold": probe.failure_threshold},
            "bad_after_ms": bad_after_ms,
            "app": if gunicorn { "gunicorn" } else { "demo-service" },
            "target_ms": target_ms,
            "rounds": out,
            "median_ms": v[v.len() / 2],
            "worst_ms": v[v.len() - 1],
        }),
    );
    println!("results: {}", p.display());
    Ok(())
}
