//! How well canary analysis judges real traffic: many canaries of a good
//! release and of a release failing a fifth of its real requests (its
//! health endpoint fine), under load, on a fleet of gunicorn hosts
//! (Debian's gunicorn and python3-prometheus-client). Run with
//! `bench/canary-judge.sh`.
//!
//! Each round deploys a new version as a canary (one host, a 5 s bake with
//! analysis, then the rest), alternating good and bad. A bad one should be
//! rolled back by the analysis ("detected"); a good one promoted (rolled
//! back, it is a false alarm). A round whose analysis stays inconclusive
//! until it waits for an operator is aborted and counted as such.
//!
//! Goal (issue 23): every bad canary caught, at most one good one rolled
//! back, over at least 20 of each.

use std::time::Duration;

use cutover_bench::{arg_u64, machine, write_results};
use cutover_tests::apps;
use cutover_tests::fleet::TestFleet;
use cutover_tests::load;

/// `cutover deploy --watch` of `version`, given up (and aborted) after
/// `limit`: (exit code, output).
fn deploy(f: &TestFleet, version: &str, fail_every: u32, limit: Duration) -> (i32, String) {
    let art = f.publish(
        &format!("metered-{version}.tar"),
        &[("app.py", &apps::metered_app(version, fail_every), 0o644)],
    );
    let spec = apps::metered_spec(f, version, apps::CANARY);
    let out = std::process::Command::new("timeout")
        .arg(limit.as_secs().to_string())
        .arg(cutover_tests::bin("cutover"))
        .args([
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &art.url,
            "--sha256",
            &art.sha256,
            "--watch",
        ])
        .env("HOME", f.cluster.dir.path())
        .envs(f.cluster.operator_env("admin"))
        .output()
        .expect("running cutover deploy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    if code == 124 {
        // Waiting for an operator after inconclusive analyses: abort it.
        let id = apps::deployment_id(&text);
        let r = f.cutover(&["abort", &id]);
        assert!(r.ok, "aborting {id}: {}", r.stderr);
        cutover_tests::poll("the abort to finish", Duration::from_secs(60), || {
            let st = f.cutover(&["status", &id, "-o", "json"]);
            let v: serde_json::Value = serde_json::from_str(&st.stdout).ok()?;
            v["rollout"]["finished_ms"].as_i64().map(|_| ())
        });
    }
    (code, text)
}

/// The request error ratio metric of the deployment's first verdict.
fn verdict(f: &TestFleet, out: &str) -> serde_json::Value {
    let id = apps::deployment_id(out);
    let st = f.cutover(&["status", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_default();
    v["rollout"]["verdicts"][0][1].clone()
}

fn main() -> anyhow::Result<()> {
    let per_kind = arg_u64("--rounds", 20) as usize;
    let hosts = arg_u64("--hosts", 4) as usize;
    anyhow::ensure!(
        cutover_tests::real_component("gunicorn")
            && cutover_tests::real_python_module("prometheus_client"),
        "needs Debian's gunicorn and python3-prometheus-client"
    );
    let f = TestFleet::builder()
        .hosts(hosts)
        .host_timeout("30s")
        .start();
    println!("fleet mode: {:?}, {hosts} hosts", f.mode);
    let v0 = "0";
    let art = f.publish(
        "metered-0.tar",
        &[("app.py", &apps::metered_app(v0, 0), 0o644)],
    );
    let (run, code) =
        f.deploy_artifact(&apps::metered_spec(&f, v0, "kind = \"recreate\""), v0, &art);
    anyhow::ensure!(code == 0, "deploying v0: {}\n{}", run.stdout, run.stderr);
    f.wait_all_on(v0);
    let load = f.load();

    let mut rounds = Vec::new();
    let (mut caught, mut missed, mut false_alarms, mut promoted, mut stuck) = (0, 0, 0, 0, 0);
    for i in 0..per_kind * 2 {
        let bad = i % 2 == 1;
        let version = format!("{}.{}", i / 2 + 1, if bad { "bad" } else { "good" });
        let (code, out) = deploy(
            &f,
            &version,
            if bad { 5 } else { 0 },
            Duration::from_secs(90),
        );
        let v = verdict(&f, &out);
        let outcome = match (bad, code) {
            (true, 3) => {
                caught += 1;
                "caught"
            }
            (true, _) if code == 124 => {
                stuck += 1;
                "inconclusive"
            }
            (true, _) => {
                missed += 1;
                "missed"
            }
            (false, 0) => {
                promoted += 1;
                "promoted"
            }
            (false, _) if code == 124 => {
                stuck += 1;
                "inconclusive"
            }
            (false, _) => {
                false_alarms += 1;
                "false alarm"
            }
        };
        let req = v["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["metric"] == "request_error_ratio"))
            .cloned()
            .unwrap_or_default();
        println!(
            "round {:2} {version:>8}: exit {code}, {outcome}; requests: canary {:.3} (n={}) baseline {:.3} (n={}) p={}",
            i + 1,
            req["canary"].as_f64().unwrap_or(f64::NAN),
            req["canary_n"],
            req["baseline"].as_f64().unwrap_or(f64::NAN),
            req["baseline_n"],
            req["p_value"],
        );
        if outcome == "false alarm" || outcome == "missed" {
            println!("{out}");
        }
        rounds.push(serde_json::json!({
            "version": version, "bad": bad, "exit": code, "outcome": outcome, "verdict": v,
        }));
    }
    let records: Vec<load::Record> = load.stop().into_iter().flatten().collect();
    let k = load::counts(&records);
    println!(
        "bad canaries caught {caught}/{per_kind} (missed {missed}); good canaries promoted {promoted}/{per_kind} (false alarms {false_alarms}); inconclusive {stuck}"
    );
    println!("client requests over the run: {k:?}");
    let p = write_results(
        "canary-judge",
        &serde_json::json!({
            "machine": machine(),
            "mode": format!("{:?}", f.mode),
            "hosts": hosts,
            "bad_error_ratio": 0.2,
            "rounds_per_kind": per_kind,
            "caught": caught, "missed": missed,
            "promoted": promoted, "false_alarms": false_alarms,
            "inconclusive": stuck,
            "requests": {"ok": k.ok, "non_2xx": k.non_2xx, "refused": k.refused,
                         "reset": k.reset, "timeout": k.timeout},
            "rounds": rounds,
        }),
    );
    println!("results: {}", p.display());
    Ok(())
}
