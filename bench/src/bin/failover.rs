//! Failover of the coordinator (issue 27): three coordinators on one
//! PostgreSQL store (a throwaway cluster from Debian's `postgresql`).
//!
//! 1. Rollout moving again: three real agents, rolling rollouts of the
//!    demo service; the leader is killed (-9) right after the rollout made
//!    a step; measured from the kill until the deployment's progress
//!    changes again (seen through the CLI, which follows the new leader).
//! 2. Agents back: `--agents N` (default 10,000) simulated agents (real
//!    mTLS sessions, `bench-fleet-scale --worker`, each knowing the three
//!    coordinators and following a standby's answer as the agent does);
//!    the leader is killed; measured until the new leader has every
//!    session.
//!
//! Goals: the rollout moving again within 5 s; 10k agents back within
//! 10 s. Options: `--rounds N` (default 10), `--lease 3s` (the
//! coordinators' `leader_lease`), `--agents N`, `--per-worker 2500`,
//! `--skip-rollout`, `--skip-agents`. Run with `bench/failover.sh`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cutover_bench::{arg, arg_u64, machine, write_results};
use cutover_tests::ha::Ha;
use cutover_tests::release::demo_tarball;
use cutover_tests::{CoordinatorOptions, poll};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let lease: &'static str = arg("--lease").map_or("3s", |v| Box::leak(v.into_boxed_str()));
    let rounds = arg_u64("--rounds", 10) as usize;
    // A part run alone (--skip-...) keeps the other part's last results.
    let last = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/failover.json");
    let mut results: Value = std::fs::read(last)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    results["benchmark"] = "failover".into();
    results["machine"] = machine();
    results["leader_lease"] = lease.into();
    results["targets"] =
        serde_json::json!({"rollout_moving_again_s_max": 5, "agents_back_s_max": 10});
    if !std::env::args().any(|a| a == "--skip-rollout") {
        results["rollout"] = rollout_moving_again(lease, rounds)?;
    }
    if !std::env::args().any(|a| a == "--skip-agents") {
        results["agents"] = agents_back(lease, arg_u64("--agents", 10_000) as usize)?;
    }
    println!("results: {}", write_results("failover", &results).display());
    Ok(())
}

const TERMINAL: &[&str] = &["succeeded", "rolled_back", "failed", "aborted"];

fn status(ha: &Ha, id: &str) -> Option<Value> {
    let r = ha.c.cutover(&["status", id, "-o", "json"]);
    serde_json::from_str(&r.stdout).ok()
}

/// What of a deployment moves: its phase and progress (not its revision
/// or times).
fn progress(v: &Value) -> String {
    format!("{} {}", v["phase"], v["progress"])
}

fn rollout_moving_again(lease: &'static str, rounds: usize) -> anyhow::Result<Value> {
    let mut ha = Ha::start(3, lease, CoordinatorOptions::default()).ok_or_else(|| {
        anyhow::anyhow!("PostgreSQL is not installed (apt-get install postgresql)")
    })?;
    let extra = ha.agent_config();
    for i in 1..=3 {
        ha.c.add_agent_with(&format!("web-{i}"), "role=web", "", None, &extra)?;
    }
    for i in 1..=3 {
        ha.c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(30));
    }
    let a = demo_tarball(ha.c.dir.path(), "demo.tar");
    let mut moving = Vec::new();
    let mut leader_found = Vec::new();
    for round in 0..rounds {
        let version = (round + 1).to_string();
        let spec = ha.c.dir.path().join(format!("web-{version}.toml"));
        std::fs::write(
            &spec,
            format!(
                "service = \"web\"\n[run]\ncommand = [\"bin/demo-service\", \"--app-version\", \"{version}\", \"--ready-delay-ms\", \"300\"]\n[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[swap]\nmin_ready = \"300ms\"\nready_timeout = \"3s\"\n[strategy]\nkind = \"rolling\"\nmax_unavailable = 1\nhealthy_deadline = \"60s\"\n[targets]\nselector = \"role=web\"\n"
            ),
        )?;
        let before = ha.leader(Duration::from_secs(30));
        let id = ha.submit(&spec, &version, &a);
        // Right after a step of the rollout (not at its very start: the
        // second batch, when there is one to come).
        let first = progress(&poll(
            "the rollout to start",
            Duration::from_secs(30),
            || status(&ha, &id),
        ));
        let stepped = poll("a step", Duration::from_secs(30), || {
            let v = status(&ha, &id)?;
            let p = progress(&v);
            (p != first && v["progress"]["batch"].as_u64() >= Some(2)).then_some(p)
        });
        // Timed from the signal: `kill` returns once the process is reaped,
        // which takes a while for one holding many connections.
        let killed = Instant::now();
        ha.coords[before.index].proc.as_mut().unwrap().kill();
        let after = ha.leader(Duration::from_secs(60));
        leader_found.push(killed.elapsed().as_secs_f64());
        // The new leader's first answer shows the state as stored (the
        // dead leader may have stored a step the CLI had not seen): moving
        // again is a change after that one.
        let resumed = progress(&poll(
            "the new leader's answer",
            Duration::from_secs(60),
            || status(&ha, &id),
        ));
        let _ = stepped;
        poll("the rollout to move again", Duration::from_secs(60), || {
            let v = status(&ha, &id)?;
            (progress(&v) != resumed || TERMINAL.contains(&v["phase"].as_str()?)).then_some(())
        });
        let t = killed.elapsed().as_secs_f64();
        moving.push(t);
        println!(
            "round {round}: {} killed, {} leads term {} after {:.2}s; rollout moving again after {t:.2}s",
            ha.coords[before.index].name,
            ha.coords[after.index].name,
            after.term,
            leader_found.last().unwrap()
        );
        ha.start_coordinator(before.index)?;
        poll("the rollout to end", Duration::from_secs(120), || {
            let v = status(&ha, &id)?;
            TERMINAL.contains(&v["phase"].as_str()?).then_some(())
        });
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        serde_json::json!({"p50": v[v.len() / 2], "max": v[v.len() - 1], "all": v.clone()})
    };
    let m = stats(&mut moving);
    println!(
        "rollout moving again after the leader's death: median {:.2}s, worst {:.2}s ({rounds} kills, lease {lease})",
        m["p50"].as_f64().unwrap(),
        m["max"].as_f64().unwrap()
    );
    Ok(serde_json::json!({
        "rounds": rounds,
        "moving_again_s": m,
        "new_leader_seen_s": stats(&mut leader_found),
    }))
}

/// Live sessions on coordinator `i`, from its metrics: 0 when it serves
/// none (a standby's metrics have no sessions), None when it does not
/// answer within 300 ms (down, or too busy).
fn sessions(ha: &Ha, i: usize) -> Option<usize> {
    let Ok(addr) = std::fs::read_to_string(ha.coords[i].state_dir.join("metrics.addr")) else {
        return Some(0);
    };
    let (200, body) =
        cutover_tests::http_get_within(addr.trim(), "/metrics", "", Duration::from_millis(300))?
    else {
        return None;
    };
    Some(
        body.lines()
            .find_map(|l| l.strip_prefix("cutover_agent_sessions "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as usize),
    )
}

/// Every coordinator's sessions, asked at once (one slow answer does not
/// stall the others' samples).
fn all_sessions(ha: &Ha) -> Vec<Option<usize>> {
    std::thread::scope(|s| {
        let asks: Vec<_> = (0..ha.coords.len())
            .map(|i| s.spawn(move || sessions(ha, i)))
            .collect();
        asks.into_iter().map(|a| a.join().ok().flatten()).collect()
    })
}

/// The new leader's log lines about taking over, as seconds after `since`.
fn takeover_lines(ha: &Ha, i: usize, since: SystemTime) -> Vec<Value> {
    let log = ha.coords[i]
        .proc
        .as_ref()
        .map(|p| p.log_text())
        .unwrap_or_default();
    log.lines()
        .filter(|l| {
            ["leads", "takeover", "coordinator listening", "resumed"]
                .iter()
                .any(|k| l.contains(k))
        })
        .filter_map(|l| {
            let (stamp, rest) = l.split_once(' ')?;
            let at = humantime::parse_rfc3339_weak(stamp).ok()?;
            let t = at.duration_since(since).ok()?.as_secs_f64();
            Some(serde_json::json!({"t": t, "line": rest.trim()}))
        })
        .collect()
}

fn agents_back(lease: &'static str, n: usize) -> anyhow::Result<Value> {
    let mut ha = Ha::start(
        3,
        lease,
        CoordinatorOptions {
            host_timeout: "60s",
            heartbeat_interval: "10s",
            ..Default::default()
        },
    )
    .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not installed (apt-get install postgresql)"))?;
    let (token, fp) = ha.c.token("role=sim", "2h", n as u32)?;
    let per_worker = arg_u64("--per-worker", 2500) as usize;
    let urls = ha.urls().join(",");
    let worker_bin = std::env::current_exe()?.with_file_name("bench-fleet-scale");
    let mut workers: Vec<Child> = Vec::new();
    let mut placed = 0;
    while placed < n {
        let count = per_worker.min(n - placed);
        let mut w = Command::new(&worker_bin)
            .args([
                "--worker",
                "--url",
                &urls,
                "--token",
                &token,
                "--fingerprint",
                &fp,
            ])
            .arg("--dir")
            .arg(ha.c.dir.path().join("sim"))
            .args([
                "--first",
                &placed.to_string(),
                "--count",
                &count.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // Drained, so a worker never blocks on a full pipe.
        let out = w.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
        workers.push(w);
        placed += count;
    }
    let leader = ha.leader(Duration::from_secs(30));
    poll(&format!("{n} sessions"), Duration::from_secs(900), || {
        if let Some(status) = workers.iter_mut().find_map(|w| w.try_wait().ok().flatten()) {
            panic!("a simulated-agent worker exited ({status}) before its agents connected");
        }
        (sessions(&ha, leader.index).unwrap_or(0) >= n).then_some(())
    });
    println!(
        "{n} simulated agents connected to {}; settling 5 s",
        ha.coords[leader.index].name
    );
    std::thread::sleep(Duration::from_secs(5));
    let (killed, killed_at) = (Instant::now(), SystemTime::now());
    ha.coords[leader.index].proc.as_mut().unwrap().kill();
    // The sessions on each coordinator, every 250 ms, until all are back
    // on one (where the time goes: the lease, the takeover, the herd).
    let mut timeline = Vec::new();
    let back_on = poll(
        "every agent on one coordinator",
        Duration::from_secs(300),
        || {
            let t = killed.elapsed().as_secs_f64();
            let counts = all_sessions(&ha);
            timeline.push(serde_json::json!({"t": t, "sessions": counts.clone()}));
            let shown: Vec<String> = counts
                .iter()
                .map(|c| c.map_or("-".into(), |c| c.to_string()))
                .collect();
            println!("  {t:5.2}s sessions [{}]", shown.join(", "));
            std::thread::sleep(Duration::from_millis(200));
            counts.iter().position(|c| c.is_some_and(|c| c >= n))
        },
    );
    let back = killed.elapsed().as_secs_f64();
    let after = ha.leader(Duration::from_secs(60));
    assert_eq!(after.index, back_on);
    let leader_seen = timeline
        .iter()
        .find(|e| e["sessions"][back_on].as_u64().unwrap_or(0) > 0)
        .and_then(|e| e["t"].as_f64())
        .unwrap_or(back);
    println!(
        "{n} agents back on {} (term {}) {back:.2}s after the leader's death (its first session {leader_seen:.2}s after; lease {lease})",
        ha.coords[after.index].name, after.term
    );
    let takeover = takeover_lines(&ha, after.index, killed_at);
    println!("the new leader's takeover (seconds after the kill):");
    for l in &takeover {
        println!(
            "  {:5.2}s {}",
            l["t"].as_f64().unwrap_or(0.0),
            l["line"].as_str().unwrap_or("")
        );
    }
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    Ok(
        serde_json::json!({"agents": n, "back_s": back, "first_session_on_new_leader_s": leader_seen, "takeover": takeover, "timeline": timeline}),
    )
}
