//! What an operator runs day to day, end to end: staging before
//! production (the promotion gate), delivery performance from the stored
//! history, metrics, drift.

use cutover_tests::fleet::TestFleet;
use cutover_tests::http_get;

fn staging_and_production() -> TestFleet {
    TestFleet::builder()
        .hosts(4)
        .labels(0, "role=web,environment=staging")
        .labels(1, "role=web,environment=staging")
        .labels(2, "role=web,environment=production")
        .labels(3, "role=web,environment=production")
        .start()
}

fn in_env(env: &str, gate: bool) -> String {
    let mut s = format!("environment = \"{env}\"\n");
    if gate {
        s.push_str("requires_success_in = [\"staging\"]\n");
    }
    s
}

#[test]
fn production_takes_only_versions_that_succeeded_in_staging() {
    let f = staging_and_production();
    let rolling = "kind = \"rolling\"\nmax_unavailable = 2";
    // v2 straight to production: refused, nothing started.
    let prod2 = f.spec("2", &[], rolling, &in_env("production", true));
    let (r, code) = f.deploy(&prod2, "2");
    assert_ne!(code, 0);
    assert!(
        r.stderr
            .contains("promotion gate: version 2 of `web` was never deployed to staging"),
        "{}",
        r.stderr
    );
    let h = f.cutover(&["history", "web", "-o", "json"]);
    assert_eq!(h.stdout.trim(), "[]", "nothing was deployed");

    // Through staging first, then production takes it.
    let (r, code) = f.deploy(&f.spec("2", &[], rolling, &in_env("staging", false)), "2");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let (r, code) = f.deploy(&prod2, "2");
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    for (host, rel) in f.releases() {
        assert!(rel.starts_with("2-"), "{host} runs {rel}");
    }

    // v3 fails in staging (rolled back): production refuses it, and says
    // why.
    let (_, code) = f.deploy(
        &f.spec(
            "3",
            &["--crash-on-start"],
            rolling,
            &in_env("staging", false),
        ),
        "3",
    );
    assert_eq!(code, 3);
    let (r, code) = f.deploy(&f.spec("3", &[], rolling, &in_env("production", true)), "3");
    assert_ne!(code, 0);
    assert!(
        r.stderr.contains("has not succeeded in staging") && r.stderr.contains("is rolled_back"),
        "{}",
        r.stderr
    );
    // The gate also comes from the command line.
    let plain3 = f.spec("3", &[], rolling, &in_env("production", false));
    let r = f.cutover(&[
        "deploy",
        plain3.to_str().unwrap(),
        "--version",
        "3",
        "--artifact",
        &f.artifact.url,
        "--sha256",
        &f.artifact.sha256,
        "--require-success-in",
        "staging",
    ]);
    assert!(!r.ok && r.stderr.contains("promotion gate"), "{}", r.stderr);

    // History shows the environments.
    let h = f.cutover(&["history", "web"]);
    assert!(h.stdout.contains("production"), "{}", h.stdout);
    assert!(h.stdout.contains("staging"), "{}", h.stdout);
}

#[test]
fn stats_report_delivery_performance_from_the_stored_history() {
    let f = TestFleet::builder().hosts(2).start();
    let rolling = "kind = \"rolling\"\nmax_unavailable = 1";
    let deploy = |version: &str, flags: &[&str], commit: &str| {
        let spec = f.spec(version, flags, rolling, "");
        let r = f.cutover(&[
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &f.artifact.url,
            "--sha256",
            &f.artifact.sha256,
            "--commit-time",
            commit,
            "--watch",
        ]);
        r.stdout
    };
    // Committed an hour ago and two hours ago; then a crashing v3.
    let ago = |h: u64| {
        humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - std::time::Duration::from_secs(h * 3600),
        )
        .to_string()
    };
    deploy("1", &[], &ago(2));
    deploy("2", &[], &ago(1));
    let out = deploy("3", &["--crash-on-start"], &ago(1));
    assert!(out.contains("rolled_back"), "{out}");
    // An operator rolls v2 back to v1: v2 counts as a failed change too.
    let r = f.cutover(&["rollback", "web"]);
    assert!(r.ok, "{}", r.stderr);
    let w = f.cutover(&["watch", "d4"]);
    assert!(w.ok, "{}", w.stdout);

    let s = f.cutover(&["stats", "--service", "web", "-o", "json"]);
    assert!(s.ok, "{}", s.stderr);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    eprintln!("{v:#}");
    // Changes: d1, d2, d3 (d4 is the rollback). Failed: d2 (rolled back
    // by an operator), d3 (rolled back by itself).
    assert_eq!(v["changes"], 3);
    assert_eq!(v["succeeded"], 2);
    assert_eq!(v["failed_ids"], serde_json::json!(["d2", "d3"]));
    assert!((v["change_failure_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // Lead times: about 2 h and 1 h (the deployments take seconds).
    let lt = &v["lead_time"];
    assert_eq!(lt["n"], 2);
    let hour = 3_600_000.0;
    let p90 = lt["p90_ms"].as_f64().unwrap();
    assert!((2.0 * hour..2.0 * hour + 120_000.0).contains(&p90), "{lt}");
    assert_eq!(v["time_to_restore"]["n"], 2);
    assert_eq!(v["unrestored"], 0);
    // The table says the same for people.
    let t = f.cutover(&["stats", "--service", "web"]);
    assert!(t.stdout.contains("change failure rate"), "{}", t.stdout);
    assert!(
        t.stdout.contains("66.7% (2 failed: d2, d3)"),
        "{}",
        t.stdout
    );
}

#[test]
fn metrics_scrape_parses_and_moves_when_deployments_run() {
    let mut f = TestFleet::builder().hosts(2).start();
    let get = |samples: &[(String, f64)], series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    let (before, text) = f.cluster.metrics();
    assert!(text.contains("# HELP cutover_hosts "), "{text}");
    assert_eq!(get(&before, "cutover_hosts{state=\"ready\"}"), 2.0);
    assert_eq!(get(&before, "cutover_agent_sessions"), 2.0);
    assert_eq!(get(&before, "cutover_deployments_active"), 0.0);
    assert!(
        !text.contains("cutover_deployments_total{"),
        "no deployment yet, no service known: {text}"
    );
    // Counters without labels of a service exist from the start, at 0.
    assert_eq!(
        get(&before, "cutover_commands_sent_total{kind=\"stage\"}"),
        0.0
    );
    assert_eq!(get(&before, "cutover_hosts{state=\"lost\"}"), 0.0);
    // Who and what: the version, leading (alone, on SQLite), and when the
    // certificates run out (the CA in ten years, the server's and the
    // hosts' within their TTLs).
    assert_eq!(get(&before, "cutover_leader"), 1.0);
    assert!(
        text.contains(&format!(
            "cutover_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = |c: &str| {
        get(
            &before,
            &format!("cutover_certificate_expiry_timestamp_seconds{{certificate=\"{c}\"}}"),
        ) - now
    };
    assert!(expiry("ca") > 9.0 * 365.0 * 86400.0, "{text}");
    for c in ["server", "host_soonest"] {
        assert!(
            expiry(c) > 0.0 && expiry(c) < 400.0 * 86400.0,
            "{c}: {text}"
        );
    }

    let rolling = "kind = \"rolling\"\nmax_unavailable = 1";
    let (_, code) = f.deploy(&f.spec("1", &[], rolling, ""), "1");
    assert_eq!(code, 0);
    let (_, code) = f.deploy(&f.spec("2", &["--crash-on-start"], rolling, ""), "2");
    assert_eq!(code, 3);

    let (after, _) = f.cluster.metrics();
    let rolling_outcome = |o: &str| {
        format!(
            "cutover_deployments_total{{service=\"web\",environment=\"\",strategy=\"rolling\",outcome=\"{o}\"}}"
        )
    };
    let rollbacks = |kind: &str| {
        format!("cutover_rollbacks_total{{service=\"web\",environment=\"\",kind=\"{kind}\"}}")
    };
    assert_eq!(get(&after, &rolling_outcome("succeeded")), 1.0);
    assert_eq!(get(&after, &rolling_outcome("rolled_back")), 1.0);
    assert_eq!(get(&after, &rolling_outcome("failed")), 0.0);
    assert_eq!(get(&after, &rollbacks("auto")), 1.0);
    assert_eq!(
        get(
            &after,
            "cutover_rollout_duration_seconds_count{strategy=\"rolling\"}"
        ),
        2.0
    );
    // v1: two batches of one, done; v2's first batch never finished.
    assert_eq!(get(&after, "cutover_batch_duration_seconds_count"), 2.0);
    assert_eq!(
        get(&after, "cutover_commands_sent_total{kind=\"stage\"}"),
        4.0
    );
    assert_eq!(get(&after, "cutover_dora_change_failure_ratio"), 0.5);
    assert_eq!(get(&after, "cutover_hosts{state=\"ready\"}"), 2.0);
    assert_eq!(get(&after, "cutover_hosts_drifted{service=\"web\"}"), 0.0);

    // Each agent serves its host's view at /metrics on its readiness
    // port, in the text format promtool checks.
    let (status, agent_text) = http_get(&f.readiness(0), "/metrics").expect("scraping the agent");
    assert_eq!(status, 200, "{agent_text}");
    let serving = agent_text
        .lines()
        .find(|l| l.starts_with("cutover_agent_service_serving{service=\"web\",release=\"1-"))
        .unwrap_or_else(|| panic!("no serving line for v1:\n{agent_text}"));
    assert!(serving.ends_with(" 1"), "{serving}");
    assert!(
        agent_text.contains("cutover_agent_service_drained{service=\"web\""),
        "{agent_text}"
    );
    promtool_check(&agent_text);

    // After a restart, the services of the history have their series at
    // 0 before anything happens: the first rollback after it is an
    // increase an alert sees (a series born at 1 is not).
    let c = &mut f.cluster;
    c.coordinator.as_mut().unwrap().kill();
    c.start_coordinator().unwrap();
    let (restarted, text) = c.metrics();
    assert_eq!(get(&restarted, &rollbacks("auto")), 0.0, "{text}");
    assert_eq!(get(&restarted, &rolling_outcome("failed")), 0.0, "{text}");

    // A scraper that does not ask for OpenMetrics gets Prometheus' text
    // format, which promtool checks (names, help, types).
    let addr = std::fs::read_to_string(c.state_dir().join("metrics.addr")).unwrap();
    let (status, plain) = http_get(addr.trim(), "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(!plain.contains("# EOF"), "{plain}");
    assert!(
        plain.contains("# TYPE cutover_rollbacks_total counter"),
        "{plain}"
    );
    promtool_check(&plain);
}

/// `promtool check metrics` on `text`: no error, no lint.
fn promtool_check(text: &str) {
    if cutover_tests::real_component("promtool") {
        use std::io::Write;
        let mut p = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_host_whose_release_was_changed_by_hand_shows_as_drifted() {
    let f = TestFleet::builder().hosts(2).start();
    let rolling = "kind = \"rolling\"\nmax_unavailable = 1";
    let (_, code) = f.deploy(&f.spec("1", &[], rolling, ""), "1");
    assert_eq!(code, 0);
    let v1 = f.releases()[0].1.clone();
    let (_, code) = f.deploy(&f.spec("2", &[], rolling, ""), "2");
    assert_eq!(code, 0);
    let v2 = f.releases()[0].1.clone();
    let r = f.cutover(&["drift"]);
    assert!(r.stdout.contains("no drift"), "{}", r.stdout);

    // On web-1, someone edits the live release by hand.
    let rel = f.cluster.agents[0]
        .state_dir
        .join("services/web/releases")
        .join(&v2);
    std::fs::write(rel.join("hotfix.conf"), "debug = true\n").unwrap();
    std::fs::set_permissions(
        rel.join("bin/demo-service"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // On web-2, v1 is switched back outside any deployment.
    let mut control = cutover_tests::release::Control::connect(&f.cluster);
    let back = control.send(
        "web-2",
        cutover_tests::release::activate("by-hand", "web", &v1),
    );
    assert!(back.ok, "{}", back.message);

    let drift = cutover_tests::poll(
        "both hosts drifted",
        std::time::Duration::from_secs(30),
        || {
            let r = f.cutover(&["drift", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).ok()?;
            let all = v.as_array()?.clone();
            let text = serde_json::to_string(&all).ok()?;
            (text.contains("added hotfix.conf") && text.contains("web-2")).then_some(all)
        },
    );
    eprintln!("{drift:#?}");
    let of = |h: &str| {
        drift
            .iter()
            .find(|d| d["host"] == h)
            .unwrap_or_else(|| panic!("{h} not drifted: {drift:?}"))["drift"]
            .to_string()
    };
    assert!(of("web-1").contains("mode of bin/demo-service changed from 755 to 700"));
    assert!(of("web-1").contains("added hotfix.conf"));
    assert!(
        of("web-2").contains(&format!("runs {v1}, but Cutover left it on {v2} (d2)")),
        "{}",
        of("web-2")
    );
    // The metric an alert watches counts both (its first count here).
    let (samples, text) = f.cluster.metrics();
    assert!(
        samples
            .iter()
            .any(|(s, v)| s == "cutover_hosts_drifted{service=\"web\"}" && *v == 2.0),
        "{text}"
    );
    let hosts = f.cutover(&["hosts"]);
    assert!(
        hosts.stdout.contains("yes: web (cutover drift)"),
        "{}",
        hosts.stdout
    );
    // A deployment puts things right again: no drift after it.
    let (_, code) = f.deploy(&f.spec("3", &[], rolling, ""), "3");
    assert_eq!(code, 0);
    cutover_tests::poll("drift gone", std::time::Duration::from_secs(30), || {
        f.cutover(&["drift"])
            .stdout
            .contains("no drift")
            .then_some(())
    });
}

/// The example alerts of docs/metrics.md, as an operator copies them:
/// `promtool check rules` accepts them, and `promtool test rules` shows
/// the main ones fire when they should and not otherwise: the first
/// automatic rollback after a restart (its counter exported from zero),
/// no coordinator leading (every one a standby) but not while one leads,
/// leadership flapping, a certificate near its end.
#[test]
fn the_documented_alerts_are_valid_and_fire_when_they_should() {
    if !cutover_tests::real_component("promtool") {
        return;
    }
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
    )
    .unwrap();
    let after = &doc[doc
        .find("## Example alerts")
        .expect("an Example alerts section")..];
    let start = after.find("```yaml\n").unwrap() + "```yaml\n".len();
    let rules = &after[start..start + after[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    let tests = r#"rule_files: [alerts.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'cutover_rollbacks_total{job="cutover",service="web",environment="production",kind="auto"}'
        values: '0 0 0 1 1 1 1 1'
      - series: 'cutover_leader{job="cutover",instance="c1"}'
        values: '0x20'
      - series: 'cutover_leader{job="cutover",instance="c2"}'
        values: '0x20'
      - series: 'cutover_leader_term{job="cutover",instance="c1"}'
        values: '1 2 3 4 5 5 5 5'
      - series: 'cutover_certificate_expiry_timestamp_seconds{job="cutover",certificate="server"}'
        values: '1000000x20'
      - series: 'cutover_certificate_expiry_timestamp_seconds{job="cutover",certificate="ca"}'
        values: '315360000x20'
    alert_rule_test:
      - eval_time: 1m
        alertname: CutoverAutomaticRollback
        exp_alerts:
          - exp_labels: {job: cutover, service: web, environment: production, kind: auto}
            exp_annotations:
              summary: "web (production) rolled back by itself: cutover history web"
      - eval_time: 3m
        alertname: CutoverNoLeader
        exp_alerts:
          - exp_labels: {}
            exp_annotations:
              summary: "no coordinator leads: cutover coordinators; journalctl -u cutover-coordinator on each (can they reach the database?)"
      - eval_time: 2m
        alertname: CutoverLeadershipFlapping
        exp_alerts:
          - exp_labels: {}
            exp_annotations:
              summary: "leadership changed 4 times in an hour: see the failover runbook"
      - eval_time: 1m
        alertname: CutoverCertificateExpiring
        exp_alerts:
          - exp_labels: {job: cutover, certificate: server}
            exp_annotations:
              summary: "the server certificate expires in under two weeks: docs/security.md"
  - interval: 15s
    input_series:
      - series: 'cutover_leader{job="cutover",instance="c1"}'
        values: '1x20'
      - series: 'cutover_leader{job="cutover",instance="c2"}'
        values: '0x20'
      - series: 'cutover_rollbacks_total{job="cutover",service="web",environment="production",kind="auto"}'
        values: '0x20'
    alert_rule_test:
      - eval_time: 3m
        alertname: CutoverNoLeader
        exp_alerts: []
      - eval_time: 3m
        alertname: CutoverAutomaticRollback
        exp_alerts: []
"#;
    std::fs::write(dir.path().join("tests.yml"), tests).unwrap();
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "tests.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}\nrules:\n{rules}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
