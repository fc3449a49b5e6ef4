//! `cutover logs`: a service's output from real agents over their
//! sessions: the newest lines of each host, one host, JSON lines, a
//! viewer's read (audited), bad requests refused, and a follow that shows
//! the new instances' output across a swap.

use std::io::BufRead;
use std::time::Duration;

use cutover_tests::release::demo_tarball;
use cutover_tests::{Cluster, CoordinatorOptions, poll};
use serde_json::Value;

fn deploy(c: &Cluster, version: &str, a: &cutover_tests::release::Artifact) {
    let text = format!(
        "service = \"web\"\n[run]\ncommand = [\"bin/demo-service\", \"--app-version\", \"{version}\"]\n[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[swap]\nmin_ready = \"200ms\"\nready_timeout = \"3s\"\n[strategy]\nkind = \"rolling\"\nmax_unavailable = 2\n[targets]\nselector = \"role=web\"\n"
    );
    let p = c.dir.path().join(format!("web-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    let r = c.cutover(&[
        "deploy",
        p.to_str().unwrap(),
        "--version",
        version,
        "--artifact",
        &a.url,
        "--sha256",
        &a.sha256,
        "--watch",
    ]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn logs_show_each_hosts_output_one_host_as_json_and_follow_a_swap() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    for i in 1..=2 {
        c.add_agent(&format!("web-{i}"), "role=web", "").unwrap();
    }
    for i in 1..=2 {
        c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    deploy(&c, "1", &a);

    // The fleet's services at a glance (`cutover services`): web on both
    // hosts, one release, nothing drained.
    let r = c.cutover(&["services", "-o", "json"]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let web = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap();
    assert_eq!(web["hosts"], 2, "{v}");
    let releases = web["releases"].as_object().unwrap();
    assert_eq!(releases.len(), 1, "{v}");
    assert!(releases.keys().all(|k| k.starts_with("1-")), "{v}");
    assert_eq!(web["drained"], serde_json::json!([]), "{v}");
    c.cutover(&["drain", "web-2"]);
    let r = c.cutover(&["services"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("web-2")),
        "{}",
        r.stdout
    );
    assert!(c.cutover(&["undrain", "web-2"]).ok);

    // Every host's newest lines: each instance said it serves.
    let r = c.cutover(&["logs", "web"]);
    assert!(r.ok, "{}", r.stderr);
    for h in ["web-1", "web-2"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{h} ")) && l.contains("demo-service 1 serving")),
            "{}",
            r.stdout
        );
    }
    // One host, as JSON lines.
    let r = c.cutover(&[
        "logs", "web", "--host", "web-2", "--tail", "5", "-o", "json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty() && lines.len() <= 5, "{}", r.stdout);
    assert!(
        lines
            .iter()
            .all(|v| v["host"] == "web-2" && v["instance"].is_string())
    );
    // A viewer may read them; the read is audited.
    c.issue_operator("watcher", "viewer").unwrap();
    let r = c.cutover_as("watcher", &["logs", "web", "--tail", "1"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(c.audited("logs.read", "ok", "host(s)"));
    // Refused, saying why: a service nobody runs, a host not enrolled,
    // too many lines, a bad name.
    for (args, want) in [
        (vec!["logs", "db"], "no host runs service `db`"),
        (
            vec!["logs", "web", "--host", "nope"],
            "host `nope` is not enrolled",
        ),
        (
            vec!["logs", "web", "--tail", "6000"],
            "tail_lines: at most 5000",
        ),
        (vec!["logs", "../web"], "service"),
    ] {
        let r = c.cutover(&args);
        assert!(!r.ok, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }

    // Following across a swap: the new instances' output shows as it
    // comes, from both hosts.
    let mut f = std::process::Command::new(cutover_tests::bin("cutover"))
        .args(["logs", "web", "--tail", "1", "-f", "-o", "json"])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = f.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = tx.send(v);
            }
        }
    });
    // The follow is open on both agents (each sent its newest line)
    // before the swap starts.
    let mut first = std::collections::BTreeSet::new();
    while first.len() < 2 {
        let v = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the follow's first lines");
        first.insert(v["host"].as_str().unwrap().to_string());
    }
    deploy(&c, "2", &a);
    let mut seen = std::collections::BTreeSet::new();
    poll(
        "both hosts' v2 output in the follow",
        Duration::from_secs(20),
        || {
            while let Ok(v) = rx.try_recv() {
                if v["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("demo-service 2 serving"))
                {
                    seen.insert(v["host"].as_str().unwrap().to_string());
                }
            }
            (seen.len() == 2).then_some(())
        },
    );
    let _ = f.kill();
    let _ = f.wait();
}
