//! Rollouts across real agents through the CLI: deploy with --watch,
//! status, history, an automatic rollback of a bad version, an operator
//! rollback, one deployment at a time per service, and a coordinator killed
//! mid-rollout that finishes after its restart without any host swapping
//! twice for one step.

use std::path::PathBuf;
use std::time::Duration;

use cutover_tests::release::demo_tarball;
use cutover_tests::{Cluster, CoordinatorOptions, Run, poll};

fn fleet(n: usize) -> (Cluster, cutover_tests::release::Artifact) {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    for i in 1..=n {
        c.add_agent(&format!("web-{i}"), "role=web", "").unwrap();
    }
    for i in 1..=n {
        c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    (c, a)
}

/// A spec file for demo-service `version` with extra flags.
fn spec_file(c: &Cluster, version: &str, extra: &[&str], strategy: &str) -> PathBuf {
    let mut cmd = vec![
        "bin/demo-service".to_string(),
        "--app-version".into(),
        version.into(),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    let text = format!(
        r#"service = "web"

[run]
command = {cmd:?}

# Agents share this machine's loopback here: each binds its own port.
[[listen]]
name = "http"
address = "127.0.0.1:0"

[swap]
min_ready = "300ms"
grace = "5s"
ready_timeout = "3s"

[strategy]
{strategy}
healthy_deadline = "20s"

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
    a: &cutover_tests::release::Artifact,
    watch: bool,
) -> (Run, i32) {
    let mut args = vec![
        "deploy",
        spec.to_str().unwrap(),
        "--version",
        version,
        "--artifact",
        &a.url,
        "--sha256",
        &a.sha256,
    ];
    if watch {
        args.push("--watch");
    }
    // Bounded: a rollout that hangs fails the test instead of the run.
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(cutover_tests::bin("cutover"))
        .args(&args)
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (out.into(), code)
}

/// Deploys `version` (recreate, the demo service) with --watch, which must
/// succeed.
fn deploy_ok(c: &Cluster, version: &str, a: &cutover_tests::release::Artifact) {
    let (r, code) = deploy(
        c,
        &spec_file(c, version, &[], "kind = \"recreate\""),
        version,
        a,
        true,
    );
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
}

fn releases(c: &Cluster) -> Vec<String> {
    c.releases().into_iter().map(|(_, r)| r).collect()
}

#[test]
fn deploy_watch_status_history_auto_rollback_and_operator_rollback() {
    let (c, a) = fleet(3);
    let v1 = spec_file(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 1");
    let (r, code) = deploy(&c, &v1, "1", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("deployment d1 succeeded"), "{}", r.stdout);
    assert!(r.stdout.contains("batch 3/3"), "{}", r.stdout);
    poll("every host to report v1", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|r| r.starts_with("1-"))
            .then_some(())
    });

    let v2 = spec_file(&c, "2", &[], "kind = \"rolling\"\nmax_unavailable = 2");
    let (r, code) = deploy(&c, &v2, "2", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("batch 2/2"), "{}", r.stdout);

    // A version that crashes on start: rolled back by itself, exit code 3.
    let v3 = spec_file(
        &c,
        "3",
        &["--crash-on-start"],
        "kind = \"rolling\"\nmax_unavailable = 1",
    );
    let (r, code) = deploy(&c, &v3, "3", &a, true);
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
    poll("every host back on v2", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|r| r.starts_with("2-"))
            .then_some(())
    });

    let st = c.cutover(&["status", "d3", "-o", "json"]);
    assert!(st.ok, "{}", st.stderr);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["phase"], "rolled_back");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("more than max_failed"),
        "{v:#}"
    );

    let h = c.cutover(&["history", "web", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let outcomes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["phase"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["rolled_back", "succeeded", "succeeded"]);
    assert_eq!(list[0]["created_by"], "operator:admin");
    // One schema: RFC 3339 times, null for what is not there, no engine
    // internals.
    assert!(
        list[0]["created_at"].as_str().unwrap().ends_with('Z'),
        "{list:#}"
    );
    assert!(list[0]["environment"].is_null(), "{list:#}");
    assert!(list[0]["rollback_of"].is_null(), "{list:#}");
    assert!(
        list[0].get("rollout").is_none() && list[0].get("progress").is_none(),
        "{list:#}"
    );

    // The operator goes back one version: a new deployment of v1.
    let r = c.cutover(&["rollback", "web", "--watch"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rolls web back to version 1"),
        "{}",
        r.stdout
    );
    poll("every host back on v1", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|r| r.starts_with("1-"))
            .then_some(())
    });

    // Bad specs never reach the coordinator, and the error says where.
    let bad = c.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&v1)
            .unwrap()
            .replace("max_unavailable = 1", "max_unavailable = \"lots\""),
    )
    .unwrap();
    let r = c.cutover(&["validate", bad.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("bad.toml:18:19: `strategy.max_unavailable`: expected a host count"),
        "{}",
        r.stderr
    );
}

#[test]
fn one_deployment_at_a_time_per_service_and_the_refusal_names_the_active_one() {
    let (c, a) = fleet(2);
    let slow = spec_file(
        &c,
        "1",
        &["--ready-delay-ms", "1500"],
        "kind = \"rolling\"\nmax_unavailable = 1",
    );
    let (r, code) = deploy(&c, &slow, "1", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    let (r, code) = deploy(&c, &slow, "1b", &a, false);
    assert_ne!(code, 0);
    assert!(
        r.stderr.contains("deployment d1 of `web` is still"),
        "{}",
        r.stderr
    );
    let w = c.cutover(&["watch", "d1"]);
    assert!(w.ok, "{}", w.stderr);
}

#[test]
fn the_coordinator_killed_mid_rollout_resumes_and_no_host_swaps_twice() {
    let (mut c, a) = fleet(3);
    let v1 = spec_file(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 3");
    assert_eq!(deploy(&c, &v1, "1", &a, true).1, 0);
    let v2 = spec_file(
        &c,
        "2",
        &["--ready-delay-ms", "700"],
        "kind = \"rolling\"\nmax_unavailable = 1",
    );
    let (r, code) = deploy(&c, &v2, "2", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    poll("the second batch to start", Duration::from_secs(20), || {
        let s = c.cutover(&["status", "d2", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
        (v["progress"]["batch"].as_u64() == Some(2)).then_some(())
    });
    // An operator was watching: the watch follows the restarted
    // coordinator from where it was, and ends with the result.
    let mut watching = std::process::Command::new("timeout")
        .arg("90")
        .arg(cutover_tests::bin("cutover"))
        .args(["watch", "d2"])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = watching.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Its first lines (the story so far) say the watch is open.
    lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the watch printed nothing");
    c.coordinator.as_mut().unwrap().kill();
    c.start_coordinator().unwrap();
    let status = watching.wait().unwrap();
    reader.join().unwrap();
    let stdout: Vec<String> = lines.try_iter().collect();
    let stdout = stdout.join("\n");
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("lost the watch"), "{stdout}");
    assert!(stdout.contains("deployment d2 succeeded"), "{stdout}");
    let w = c.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    assert!(w.stdout.contains("succeeded"), "{}", w.stdout);
    poll("every host on v2", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|r| r.starts_with("2-"))
            .then_some(())
    });
    // Each agent started the v2 release exactly once.
    for i in 1..=3 {
        let log = c
            .agent(&format!("web-{i}"))
            .proc
            .as_ref()
            .unwrap()
            .log_text();
        let starts = log
            .lines()
            .filter(|l| l.contains("started 2-") && l.contains("waiting until healthy"))
            .count();
        assert_eq!(starts, 1, "web-{i} started v2 {starts} times:\n{log}");
    }
}

fn canary_spec(c: &Cluster, version: &str, extra: &[&str], strategy: &str) -> PathBuf {
    let mut cmd = vec![
        "bin/demo-service".to_string(),
        "--app-version".into(),
        version.into(),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    let text = format!(
        r#"service = "web"

[run]
command = {cmd:?}

[[listen]]
name = "http"
address = "127.0.0.1:0"

[swap]
min_ready = "200ms"
ready_timeout = "3s"

# Sampled for the canary analysis: the main page, every 50 ms. A high
# threshold keeps a flaky page from restarting the instance.
[probes.liveness]
http = {{ listener = "http", path = "/" }}
interval = "50ms"
failure_threshold = 100000

[strategy]
{strategy}
healthy_deadline = "20s"

[targets]
selector = "role=web"
"#
    );
    let p = c.dir.path().join(format!("canary-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_canary_with_a_raised_error_ratio_fails_its_analysis_and_is_rolled_back() {
    let (c, a) = fleet(4);
    // The first version goes out rolling: a canary needs a baseline.
    assert_eq!(
        deploy(
            &c,
            &canary_spec(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 4"),
            "1",
            &a,
            true
        )
        .1,
        0
    );
    let canary = "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"3s\", analysis = true }, { hosts = \"100%\" } ]";
    // A healthy v2 canary passes its analysis and goes everywhere.
    let (r, code) = deploy(&c, &canary_spec(&c, "2", &[], canary), "2", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Pass"), "{}", r.stdout);
    // v3 answers half its requests with 500: the canary fails, and only it
    // is sent back.
    let (r, code) = deploy(
        &c,
        &canary_spec(&c, "3", &["--error-ratio", "0.5"], canary),
        "3",
        &a,
        true,
    );
    assert_eq!(code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("step 1 analysis: Fail"), "{}", r.stdout);
    assert!(r.stdout.contains("error_ratio Fail"), "{}", r.stdout);
    poll("every host back on v2", Duration::from_secs(10), || {
        releases(&c)
            .iter()
            .all(|r| r.starts_with("2-"))
            .then_some(())
    });
    let st = c.cutover(&["status", "d3", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let verdict = &v["progress"]["analyses"][0];
    assert_eq!(verdict["verdict"], "fail", "{v:#}");
    assert!(
        verdict["metrics"][0]["canary"].as_f64().unwrap() > 0.2,
        "the numbers are stored with the verdict: {verdict:#}"
    );
    // Typed on the wire, for tools.
    use cutover_proto::v1 as pb;
    let mut control = cutover_tests::release::Control::connect(&c);
    let d3 = control
        .call(|mut k| async move {
            k.get_deployment(pb::GetDeploymentRequest {
                id: "d3".into(),
                ..Default::default()
            })
            .await
        })
        .unwrap();
    let st = d3.status.expect("typed status");
    assert_eq!(st.phase(), pb::DeploymentPhase::RolledBack);
    assert!(st.reason.contains("analysis"), "{}", st.reason);
    assert_eq!(st.strategy(), pb::Strategy::Canary);
    let analysis = &st.analyses[0];
    assert_eq!(analysis.verdict(), pb::Verdict::Fail);
    let m = analysis
        .metrics
        .iter()
        .find(|m| m.metric == "error_ratio")
        .expect("error_ratio judged");
    assert!(m.canary > m.baseline && m.canary > 0.2, "{m:?}");
    assert!(m.canary_samples > 0 && m.baseline_samples > 0, "{m:?}");
    assert_eq!(
        st.hosts
            .iter()
            .filter(|h| h.phase() == pb::HostPhase::RolledBack)
            .count(),
        1,
        "only the canary was sent back: {:?}",
        st.hosts
    );
}

#[test]
fn blue_green_switches_to_the_new_group_and_back_instantly() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    for (h, color) in [
        ("web-1", "blue"),
        ("web-2", "blue"),
        ("web-3", "green"),
        ("web-4", "green"),
    ] {
        c.add_agent(h, &format!("role=web,color={color}"), "")
            .unwrap();
    }
    for h in ["web-1", "web-2", "web-3", "web-4"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    // The switch command a load balancer integration would be: here it
    // records which group is live.
    let live = c.dir.path().join("live-group");
    let script = c.dir.path().join("switch.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CUTOVER_LIVE_GROUP\" > {}\necho switched to $CUTOVER_LIVE_GROUP\n",
            live.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let strategy = format!(
        "kind = \"blue_green\"\nswitch = {{ command = [\"{}\"] }}",
        script.display()
    );
    let v1 = spec_file(&c, "1", &[], &strategy);
    // The switch runs on the coordinator: a deployer may not submit one.
    c.issue_operator("dep", "deployer").unwrap();
    let r = c.cutover_as(
        "dep",
        &[
            "deploy",
            v1.to_str().unwrap(),
            "--version",
            "1",
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
        ],
    );
    assert!(
        !r.ok && r.stderr.contains("needs the admin role"),
        "{}",
        r.stderr
    );
    let (r, code) = deploy(&c, &v1, "1", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(&live).unwrap().trim(), "blue");
    let v2 = spec_file(&c, "2", &[], &strategy);
    let (r, code) = deploy(&c, &v2, "2", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("traffic switched to group green"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&live).unwrap().trim(), "green");
    // Blue still runs v1, untouched: switching back is instant.
    let by_host = |c: &Cluster| c.releases();
    poll("green on v2, blue on v1", Duration::from_secs(10), || {
        let v = by_host(&c);
        v.iter()
            .all(|(h, r)| {
                if h == "web-1" || h == "web-2" {
                    r.starts_with("1-")
                } else {
                    r.starts_with("2-")
                }
            })
            .then_some(())
    });
    let r = c.cutover(&["rollback", "web"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("switched back to group blue"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(&live).unwrap().trim(), "blue");
    // In the delivery figures version 2 stays a deployment, a failed
    // change restored by the switch back, timed from its end (not its
    // start) to the switch.
    let st = c.cutover(&["stats", "--service", "web", "-o", "json"]);
    assert!(st.ok, "{}", st.stderr);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["succeeded"], 2, "{}", st.stdout);
    assert_eq!(v["failed"], 1, "{}", st.stdout);
    assert_eq!(v["time_to_restore"]["n"], 1, "{}", st.stdout);
    let d2 = c.cutover(&["status", "d2", "-o", "json"]);
    let d2: serde_json::Value = serde_json::from_str(&d2.stdout).unwrap();
    let newest = c.cutover(&["status", "-o", "json"]);
    let newest: serde_json::Value = serde_json::from_str(&newest.stdout).unwrap();
    assert!(newest.to_string().contains("undoing d2"), "{newest}");
    let end = |v: &serde_json::Value| {
        let at = v["finished_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no end in {v}"));
        humantime::parse_rfc3339(at)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    assert_eq!(
        v["time_to_restore"]["median_ms"].as_i64().unwrap(),
        end(&newest) - end(&d2),
        "{}",
        st.stdout
    );
    // The next deployment goes to the idle group again: green.
    let v3 = spec_file(&c, "3", &[], &strategy);
    let (r, code) = deploy(&c, &v3, "3", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("activating web-3, web-4"), "{}", r.stdout);
}

#[test]
fn a_submit_cancelled_by_its_client_leaves_nothing_or_a_deployment_that_runs_and_a_retry_makes_no_second()
 {
    let (c, a) = fleet(2);
    let mut control = cutover_tests::release::Control::connect(&c);
    let terminal = ["succeeded", "rolled_back", "aborted", "failed"];
    let spec_of = |version: &str| cutover_proto::v1::SpecRequest {
        spec_toml: std::fs::read_to_string(spec_file(&c, version, &[], "kind = \"recreate\""))
            .unwrap(),
        file_name: format!("web-{version}.toml"),
        version: version.into(),
        artifact_url: a.url.clone(),
        artifact_sha256: a.sha256.clone(),
        ..Default::default()
    };
    let mut cancelled = 0;
    let mut ids = Vec::new();
    // Client deadlines from 0.1 to 4 ms: some submits are dropped before
    // the coordinator stores them, some after, some answered. Each is
    // retried with its request id, as a CI job would after a timeout.
    for (i, us) in (100u64..=4000).step_by(200).enumerate() {
        let version = format!("{}", i + 1);
        let request_id = format!("ci-run-{i}");
        if control
            .submit_within(spec_of(&version), &request_id, Duration::from_micros(us))
            .is_none()
        {
            cancelled += 1;
        }
        let retry = control
            .submit(spec_of(&version), &request_id)
            .expect("the retry is accepted");
        ids.push(retry.id.clone());
        // Whatever the client saw, every stored deployment ends, and the
        // service is free for the next one.
        let ds = poll(
            &format!("every deployment to end after submit {version} ({us} µs)"),
            Duration::from_secs(60),
            || {
                let ds = control.deployments("web");
                ds.iter()
                    .all(|d| terminal.contains(&d.phase.as_str()))
                    .then_some(ds)
            },
        );
        assert!(
            ds.iter().all(|d| d.phase == "succeeded"),
            "{:?}",
            ds.iter().map(|d| (&d.id, &d.phase)).collect::<Vec<_>>()
        );
    }
    eprintln!("{cancelled} of 20 submits cancelled by their client, each retried");
    assert!(
        cancelled > 0,
        "no submit was cancelled: the test tested nothing"
    );
    // One deployment per request, never two.
    let ds = control.deployments("web");
    assert_eq!(
        ds.len(),
        20,
        "{:?}",
        ds.iter().map(|d| &d.version).collect::<Vec<_>>()
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 20);
    // A request id used again for another version is refused.
    let e = control.submit(spec_of("99"), "ci-run-3").unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    assert!(e.message().contains("ci-run-3"), "{e}");
    // And a deployment goes through after all of it.
    deploy_ok(&c, "21", &a);
}

/// A spec of `spec_file` for one environment, in its own file.
fn env_spec(c: &Cluster, version: &str, strategy: &str, env: &str) -> PathBuf {
    let text = std::fs::read_to_string(spec_file(c, version, &[], strategy)).unwrap();
    let text = text.replace(
        "selector = \"role=web\"",
        &format!("selector = \"role=web\"\nenvironment = \"{env}\""),
    );
    let p = c.dir.path().join(format!("web-{env}-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_rollback_stays_in_its_environment_and_after_a_failed_switch_goes_back_one_step() {
    let mut c = Cluster::start(CoordinatorOptions::default()).unwrap();
    for (h, labels) in [
        ("web-1", "role=web,environment=production,color=blue"),
        ("web-2", "role=web,environment=production,color=blue"),
        ("web-3", "role=web,environment=production,color=green"),
        ("web-4", "role=web,environment=production,color=green"),
        ("stage-1", "role=web,environment=staging"),
    ] {
        c.add_agent(h, labels, "").unwrap();
    }
    for h in ["web-1", "web-2", "web-3", "web-4", "stage-1"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    // The switch command: records where traffic goes and the version it
    // is told serves there; while `fail` exists it moves traffic and
    // then fails, as a balancer whose reload timed out would.
    let log = c.dir.path().join("switches");
    let fail = c.dir.path().join("fail");
    let script = c.dir.path().join("switch.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CUTOVER_LIVE_GROUP $CUTOVER_VERSION\" >> {}\n[ -e {} ] && exit 1\nexit 0\n",
            log.display(),
            fail.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let last_switch = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string()
    };
    let bg = format!(
        "kind = \"blue_green\"\nswitch = {{ command = [\"{}\"] }}",
        script.display()
    );
    let prod = |v: &str| env_spec(&c, v, &bg, "production");
    let release_of = |host: &str| {
        c.releases()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, r)| r)
            .unwrap_or_default()
    };
    for v in ["1", "2"] {
        let (r, code) = deploy(&c, &prod(v), v, &a, true);
        assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    }
    assert_eq!(last_switch(), "green 2");
    // Staging gets a newer version: the newest deployment of `web`.
    let staging = env_spec(&c, "9", "kind = \"rolling\"", "staging");
    let (r, code) = deploy(&c, &staging, "9", &a, true);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    // A rollback must say which environment.
    let r = c.cutover(&["rollback", "web"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("several environments (production, staging)"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // Version 3 goes to blue; the switch moves traffic there, then fails.
    std::fs::write(&fail, "").unwrap();
    let (r, code) = deploy(&c, &prod("3"), "3", &a, true);
    assert_eq!(code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("switch command failed"), "{}", r.stderr);
    assert_eq!(last_switch(), "blue 3");
    std::fs::remove_file(&fail).unwrap();
    // Back one step from 3: traffic to green, which runs 2 (not a
    // redeployment of 1, two versions back), and the switch is told so.
    let r = c.cutover(&["rollback", "web", "--environment", "production"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("switched back to group green: version 2 serves again"),
        "{}",
        r.stdout
    );
    assert_eq!(last_switch(), "green 2");
    let on = |want: [(&str, &str); 3]| {
        poll(
            &format!("hosts on {want:?}"),
            Duration::from_secs(10),
            || {
                want.iter()
                    .all(|(h, v)| release_of(h).starts_with(&format!("{v}-")))
                    .then_some(())
            },
        )
    };
    on([("web-3", "2"), ("web-1", "3"), ("stage-1", "9")]);
    // The switch back is a deployment of its own, of version 2.
    let st = c.cutover(&["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["version"], "2", "{}", st.stdout);
    assert_eq!(v["phase"], "succeeded", "{}", st.stdout);
    // Once more: one step back from 2 is 1 (3 was undone), deployed to
    // the idle group (blue) and switched to; staging is not touched.
    let r = c.cutover(&["rollback", "web", "--environment", "production", "--watch"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rolls web back to version 1"),
        "{}",
        r.stdout
    );
    assert_eq!(last_switch(), "blue 1");
    on([("web-1", "1"), ("web-3", "2"), ("stage-1", "9")]);
}

#[test]
fn a_mutating_call_retried_with_its_request_id_is_done_once() {
    use cutover_proto::v1 as pb;
    let (c, a) = fleet(2);
    for v in ["1", "2"] {
        deploy_ok(&c, v, &a);
    }
    let mut control = cutover_tests::release::Control::connect(&c);
    // A rollback, retried: the same deployment, not a second rollback
    // (which would find nothing earlier, or go back further).
    let rollback = |to: &str| pb::RollbackServiceRequest {
        service: "web".into(),
        to_version: to.into(),
        request_id: "ci-42-rollback".into(),
        ..Default::default()
    };
    let first = control
        .call(|mut k| async move { k.rollback_service(rollback("")).await })
        .unwrap();
    assert_eq!(first.version, "1");
    poll("the rollback to end", Duration::from_secs(30), || {
        (control.deployments("web")[0].phase == "succeeded").then_some(())
    });
    let again = control
        .call(|mut k| async move { k.rollback_service(rollback("")).await })
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(control.deployments("web").len(), 3);
    let e = control
        .call(|mut k| async move { k.rollback_service(rollback("2")).await })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    // A join token: its secret is not kept, so a retry names the token
    // the first call made instead of making a second.
    let token = |id: &str| pb::CreateTokenRequest {
        ttl_ms: 60_000,
        uses: 1,
        request_id: id.into(),
        ..Default::default()
    };
    let t = control
        .call(|mut k| async move { k.create_token(token("tok-1")).await })
        .unwrap();
    assert!(!t.token.is_empty());
    let e = control
        .call(|mut k| async move { k.create_token(token("tok-1")).await })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    assert!(e.message().contains(&t.token_id), "{e}");
    // Removing a host, retried, succeeds as the first did; without a
    // request id the second says the host is gone.
    let remove = |id: &str| pb::RemoveHostRequest {
        host_id: "web-2".into(),
        request_id: id.into(),
    };
    for _ in 0..2 {
        control
            .call(|mut k| async move { k.remove_host(remove("rm-1")).await })
            .unwrap();
    }
    let e = control
        .call(|mut k| async move { k.remove_host(remove("")).await })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    // A bad request id is refused before anything is done.
    let e = control
        .call(|mut k| async move { k.remove_host(remove("no spaces")).await })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
}

#[test]
fn every_list_pages_with_tokens_and_cuts_nothing_silently() {
    use cutover_proto::v1 as pb;
    let (c, a) = fleet(3);
    for v in ["1", "2", "3"] {
        deploy_ok(&c, v, &a);
    }
    let mut control = cutover_tests::release::Control::connect(&c);
    // Deployments, two at a time, newest first.
    let mut versions = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let req = pb::ListDeploymentsRequest {
            service: "web".into(),
            page_size: 2,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = control
            .call(|mut k| async move { k.list_deployments(req).await })
            .unwrap();
        pages += 1;
        versions.extend(page.deployments.into_iter().map(|d| d.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        (versions, pages),
        (vec!["3".to_string(), "2".into(), "1".into()], 2)
    );
    // Hosts, one at a time, by id.
    let mut hosts = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListHostsRequest {
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = control
            .call(|mut k| async move { k.list_hosts(req).await })
            .unwrap();
        hosts.extend(page.hosts.into_iter().map(|h| h.host_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(hosts, ["web-1", "web-2", "web-3"]);
    // The audit log: a page says there is more.
    let req = pb::ListAuditRequest {
        page_size: 1,
        ..Default::default()
    };
    let page = control
        .call(|mut k| async move { k.list_audit(req).await })
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert!(!page.next_page_token.is_empty());
    // A token of another list is refused.
    let req = pb::ListHostsRequest {
        page_token: page.next_page_token,
        ..Default::default()
    };
    let e = control
        .call(|mut k| async move { k.list_hosts(req).await })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    // The CLI reads every page.
    let r = c.cutover(&["history", "web", "--limit", "3", "-o", "json"]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()), Some(3), "{}", r.stdout);
}

#[test]
fn plan_shows_the_batches_what_each_host_runs_and_who_is_left_out() {
    let (c, a) = fleet(3);
    deploy_ok(&c, "1", &a);
    // No balancer checks these hosts: the drain waits deregistration_delay.
    let r = c.cutover(&["drain", "web-2"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    poll("web-2 to report drained", Duration::from_secs(10), || {
        c.hosts()
            .iter()
            .any(|h| h["host"] == "web-2" && h["services"][0]["drained"] == true)
            .then_some(())
    });
    // `cutover hosts` says so where people look first.
    let r = c.cutover(&["hosts"]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("web-2"))
        .unwrap_or_default();
    assert!(line.contains("ready, drained: web"), "{}", r.stdout);
    let spec = spec_file(&c, "2", &[], "kind = \"rolling\"\nmax_unavailable = 1");
    let r = c.cutover(&["plan", spec.to_str().unwrap(), "-o", "json"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let batches = v["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "{}", r.stdout);
    assert_eq!(batches[0]["hosts"][0]["host"], "web-1", "{}", r.stdout);
    assert!(
        batches[0]["hosts"][0]["runs_now"]
            .as_str()
            .is_some_and(|s| s.starts_with("1-")),
        "{}",
        r.stdout
    );
    assert_eq!(batches[1]["hosts"][0]["host"], "web-3", "{}", r.stdout);
    assert_eq!(v["skipped"][0]["host"], "web-2", "{}", r.stdout);
    assert!(
        v["skipped"][0]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("drained")),
        "{}",
        r.stdout
    );
    assert_eq!(v["max_failed"], 0);
    let r = c.cutover(&["plan", spec.to_str().unwrap()]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("skipped web-2: drained"), "{}", r.stdout);
    assert!(r.stdout.contains("2 batch(es), 2 host(s)"), "{}", r.stdout);
}

#[test]
fn pause_resume_promote_and_abort_answer_with_the_state_they_led_to() {
    use cutover_proto::v1 as pb;
    let (c, a) = fleet(3);
    let rolling = spec_file(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 3");
    assert_eq!(deploy(&c, &rolling, "1", &a, true).1, 0);
    let canary =
        "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"manual\" }, { hosts = \"100%\" } ]";
    let mut control = cutover_tests::release::Control::connect(&c);
    let mut act = |id: &str, action: &str| {
        let req = pb::ControlDeploymentRequest {
            id: id.into(),
            action: action.into(),
            ..Default::default()
        };
        control
            .call(|mut k| async move { k.control_deployment(req).await })
            .map(|d| d.status.expect("typed status"))
    };
    let waiting = |id: &str| {
        poll(
            &format!("{id} to wait for promote"),
            Duration::from_secs(30),
            || {
                let s = c.cutover(&["status", id, "-o", "json"]);
                let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
                (v["phase"] == "waiting").then_some(())
            },
        )
    };
    let (r, code) = deploy(&c, &spec_file(&c, "2", &[], canary), "2", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    waiting("d2");
    // Each answer is the state after the action, not before it.
    let s = act("d2", "pause").unwrap();
    assert!(s.paused, "{s:?}");
    let s = act("d2", "resume").unwrap();
    assert!(!s.paused, "{s:?}");
    assert_eq!(s.phase(), pb::DeploymentPhase::Waiting);
    // Nothing to resume: refused, saying so (was accepted and ignored).
    let e = act("d2", "resume").unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("not paused"), "{e}");
    let s = act("d2", "promote").unwrap();
    assert_ne!(s.phase(), pb::DeploymentPhase::Waiting, "{s:?}");
    // A second promote: nothing waits for one any more.
    let r = c.cutover(&["promote", "d2"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr.contains("nothing waits for a promote") || r.stderr.contains("not running"),
        "{}",
        r.stderr
    );
    let w = c.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    // An abort answers with the rollback it started (or its end).
    let (r, code) = deploy(&c, &spec_file(&c, "3", &[], canary), "3", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    waiting("d3");
    let s = act("d3", "abort").unwrap();
    assert!(
        matches!(
            s.phase(),
            pb::DeploymentPhase::RollingBack | pb::DeploymentPhase::Aborted
        ),
        "{s:?}"
    );
    let w = std::process::Command::new(cutover_tests::bin("cutover"))
        .args(["watch", "d3"])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    assert_eq!(
        w.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&w.stdout)
    );
}

#[test]
fn a_backup_taken_while_the_coordinator_runs_restores_the_store_and_its_ca() {
    let (mut c, a) = fleet(2);
    deploy_ok(&c, "1", &a);
    let local = |args: &[&str]| -> Run {
        std::process::Command::new(cutover_tests::bin("cutover"))
            .args(args)
            .arg("--config")
            .arg(&c.config)
            .output()
            .unwrap()
            .into()
    };
    let bk = c.dir.path().join("backup");
    let bk_s = bk.to_str().unwrap().to_string();
    // Taken live.
    let r = local(&["backup", "--to", &bk_s]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("backed up 1 deployment(s), 2 host(s)"),
        "{}",
        r.stdout
    );
    let r = local(&["backup", "--to", &bk_s]);
    assert!(!r.ok && r.stderr.contains("is not empty"), "{}", r.stderr);
    // Work after the backup.
    deploy_ok(&c, "2", &a);
    // Not over a running coordinator.
    let r = local(&["restore", "--from", &bk_s, "--force"]);
    assert!(
        !r.ok && r.stderr.contains("another coordinator runs"),
        "{}",
        r.stderr
    );
    c.coordinator.as_mut().unwrap().kill();
    let r = local(&["restore", "--from", &bk_s]);
    assert!(!r.ok && r.stderr.contains("--force"), "{}", r.stderr);
    let r = local(&["restore", "--from", &bk_s, "--force"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(c.state_dir().join("cutover.db.before-restore").exists());
    c.start_coordinator().unwrap();
    // The store as it was: d1 only. The same CA: the agents come back.
    let h = c.cutover(&["history", "web", "-o", "json"]);
    assert!(h.ok, "{}", h.stderr);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["d1"], "{}", h.stdout);
    for h in ["web-1", "web-2"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    // The agents saw deployment d2 (its commands, its fencing epoch),
    // which the restored store does not know: the next deployment must
    // not reuse its number.
    deploy_ok(&c, "3", &a);
    assert!(!r.stdout.contains("deployment d2 "), "{}", r.stdout);
}

/// Every key of a JSON value, at any depth.
fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// Where `v` holds an empty string (a missing value is `null`).
fn empty_strings(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| empty_strings(v, &format!("{at}.{k}"), out)),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| empty_strings(v, &format!("{at}[{i}]"), out)),
        serde_json::Value::String(s) if s.is_empty() => out.push(at.to_string()),
        _ => {}
    }
}

#[test]
fn every_json_output_about_deployments_has_one_schema_and_watch_streams_json_lines() {
    let (c, a) = fleet(2);
    let spec = spec_file(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 1");
    let run = |args: &[&str]| -> (Run, i32) {
        let out = std::process::Command::new("timeout")
            .arg("90")
            .arg(cutover_tests::bin("cutover"))
            .args(args)
            .env("HOME", c.dir.path())
            .envs(c.operator_env("admin"))
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        (out.into(), code)
    };
    let deploy_args = |version: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
            "-o",
            "json",
        ]
        .map(String::from)
        .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // deploy -o json: the deployment, its id first of all.
    let args = deploy_args("1", &[]);
    let (r, code) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{}", r.stderr);
    let d: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(d["id"], "d1", "{d:#}");
    assert!(
        d["finished_at"].is_null() && d["environment"].is_null(),
        "{d:#}"
    );
    // watch -o json: one JSON line per state, the last one terminal.
    let (r, code) = run(&["watch", "d1", "-o", "json"]);
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["phase"], "succeeded", "{last:#}");
    assert!(last["finished_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        last["progress"]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["phase"] == "done"),
        "{last:#}"
    );
    assert!(r.stderr.contains("deployment d1 succeeded"), "{}", r.stderr);
    // deploy --watch -o json: the same stream, and the exit code.
    let args = deploy_args("2", &["--watch"]);
    let (r, code) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{}\n{}", r.stdout, r.stderr);
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "d2");
    // status, history: the same names; times in RFC 3339; no engine
    // internals and no epoch milliseconds.
    let (r, _) = run(&["status", "d2", "-o", "json"]);
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (r, _) = run(&["history", "web", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(h[0]["id"], st["id"]);
    assert_eq!(h[0]["created_at"], st["created_at"]);
    assert_eq!(h[0]["created_by"], "operator:admin");
    let mut all = Vec::new();
    keys(&st, &mut all);
    keys(&h, &mut all);
    for k in &all {
        assert!(
            !k.ends_with("_ms")
                && !["rollout", "held_batch", "by", "outcome"].contains(&k.as_str()),
            "{k} in {st:#}"
        );
    }
    let note_at = st["progress"]["notes"][0]["at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(note_at).is_ok(), "{note_at}");
    // What each host has on disk: both releases, as the agents said in
    // their results (it was always [] until a host reconnected).
    let (r, _) = run(&["hosts", "-o", "json"]);
    let hosts: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for h in hosts.as_array().unwrap() {
        let staged = h["services"][0]["staged_releases"].as_array().unwrap();
        assert_eq!(staged.len(), 2, "{h:#}");
        assert!(
            staged.contains(&h["services"][0]["active_release"]),
            "{h:#}"
        );
    }
    // The per-service view: what is live, where, and lately.
    let (r, code) = run(&["service", "web", "-o", "json"]);
    assert_eq!(code, 0, "{}", r.stderr);
    let sv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(sv["live"][0]["version"], "2", "{sv:#}");
    assert_eq!(sv["live"][0]["deployment"], "d2", "{sv:#}");
    assert!(sv["live"][0]["environment"].is_null(), "{sv:#}");
    assert!(sv["running"].is_null(), "{sv:#}");
    let on: Vec<&serde_json::Value> = sv["hosts"].as_array().unwrap().iter().collect();
    assert_eq!(on.len(), 2, "{sv:#}");
    assert!(on.iter().all(|h| h["version"] == "2"), "{sv:#}");
    assert_eq!(sv["recent"][0]["id"], "d2", "{sv:#}");
    let (r, _) = run(&["service", "web"]);
    assert!(
        r.stdout.contains("LIVE VERSION") && r.stdout.contains("no deployment running"),
        "{}",
        r.stdout
    );
    let (r, code) = run(&["service", "nothing"]);
    assert_ne!(code, 0);
    assert!(r.stderr.contains("no service `nothing`"), "{}", r.stderr);
    // The per-host view.
    let (r, code) = run(&["hosts", "show", "web-1", "-o", "json"]);
    assert_eq!(code, 0, "{}", r.stderr);
    let hv: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(hv["host"], "web-1");
    assert_eq!(hv["services"][0]["service"], "web", "{hv:#}");
    // Its latest commands and their results, newest first: d2's activate
    // and stage, then d1's.
    let cmds = hv["recent_commands"].as_array().expect("recent_commands");
    let seen: Vec<(String, String, String)> = cmds
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or("").to_string(),
                c["deployment"].as_str().unwrap_or("").to_string(),
                c["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen[..4].to_vec(),
        vec![
            ("activate".into(), "d2".into(), "ok".into()),
            ("stage".into(), "d2".into(), "ok".into()),
            ("activate".into(), "d1".into(), "ok".into()),
            ("stage".into(), "d1".into(), "ok".into()),
        ],
        "{hv:#}"
    );
    assert!(
        cmds[0]["finished_at"].as_str().unwrap().ends_with('Z'),
        "{hv:#}"
    );
    // Nothing missing is `""`: status, history, hosts, one host, one service.
    let mut empty = Vec::new();
    for (name, v) in [
        ("status", &st),
        ("history", &h),
        ("hosts", &hosts),
        ("hosts show", &hv),
        ("service", &sv),
    ] {
        empty_strings(v, name, &mut empty);
    }
    assert!(empty.is_empty(), "\"\" where null belongs: {empty:?}");
    let (r, _) = run(&["hosts", "show", "web-1"]);
    assert!(r.stdout.starts_with("host web-1 (ready"), "{}", r.stdout);
    assert!(r.stdout.contains("2 release(s) on disk"), "{}", r.stdout);
    assert!(
        r.stdout.contains("latest commands:") && r.stdout.contains("activate  d2"),
        "{}",
        r.stdout
    );
    let (r, code) = run(&["whoami", "-o", "json"]);
    assert_eq!(code, 0);
    let me: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    // validate, drain, undrain and hosts remove print JSON too (drain:
    // one line per event, the last its result).
    let (r, code) = run(&["validate", spec.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["service"].as_str()),
        (Some(true), Some("web")),
        "{v:#}"
    );
    for cmd in ["drain", "undrain"] {
        let (r, code) = run(&[cmd, "web-1", "-o", "json"]);
        assert_eq!(code, 0, "{}", r.stderr);
        let events: Vec<serde_json::Value> = r
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let last = events.last().unwrap();
        assert_eq!(
            (
                last["event"].as_str(),
                last["ok"].as_bool(),
                last["host"].as_str()
            ),
            (Some("result"), Some(true), Some("web-1")),
            "{cmd}: {events:#?}"
        );
    }
    let (r, code) = run(&["hosts", "remove", "web-2", "-o", "json"]);
    assert_eq!(code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["removed"], true, "{v:#}");
}

#[test]
fn a_watch_in_a_ci_log_says_now_and_then_that_a_canary_still_waits() {
    let (c, a) = fleet(2);
    let spec = canary_spec(
        &c,
        "1",
        &[],
        "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"manual\" }, { hosts = \"100%\" } ]",
    );
    let (r, code) = deploy(&c, &spec, "1", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    poll("the canary step to wait", Duration::from_secs(30), || {
        let s = c.cutover(&["status", "d1", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
        (v["phase"] == "waiting").then_some(())
    });
    // Not a terminal (as in CI): no progress bar, so without these lines a
    // long wait would look like a hang.
    let out = std::process::Command::new("timeout")
        .args(["-s", "INT", "40"])
        .arg(cutover_tests::bin("cutover"))
        .args(["watch", "d1"])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("d1  still step 1/2: waiting for `cutover promote d1`"),
        "{stdout}"
    );
    // Replies for scripts: the deployment after the action, as status
    // -o json shows it. A promote while paused is refused (it used to be
    // accepted and lost).
    let json = |args: &[&str]| -> serde_json::Value {
        let r = c.cutover(args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?} ({e}): {}", r.stdout))
    };
    let paused = json(&["pause", "d1", "-o", "json"]);
    assert_eq!(
        (
            paused["id"].as_str(),
            paused["progress"]["paused"].as_bool()
        ),
        (Some("d1"), Some(true)),
        "{paused:#}"
    );
    let r = c.cutover(&["promote", "d1"]);
    assert!(
        !r.ok && r.stderr.contains("d1 is paused: `cutover resume d1` first"),
        "{}",
        r.stderr
    );
    let resumed = json(&["resume", "d1", "-o", "json"]);
    assert_eq!(resumed["progress"]["paused"], false, "{resumed:#}");
    let promoted = json(&["promote", "d1", "-o", "json"]);
    assert_ne!(promoted["phase"], "waiting", "{promoted:#}");
}

/// A webhook receiver: every POST body, in order; answers 200.
fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let failed_once = std::sync::atomic::AtomicBool::new(false);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let (mut sig, mut ts, mut path) = (String::new(), String::new(), String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if path.is_empty() {
                    path = h.split_whitespace().nth(1).unwrap_or("").to_string();
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("x-cutover-signature:") {
                    sig = v.trim().to_string();
                }
                if let Some(v) = lower.strip_prefix("x-cutover-timestamp:") {
                    ts = v.trim().to_string();
                }
            }
            let mut body = vec![0; len];
            // `/flaky` fails its first POST: the sender must try again.
            if path == "/flaky" && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = r.read_exact(&mut body);
                let _ = conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            if r.read_exact(&mut body).is_ok()
                && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body)
            {
                // What the receiver saw besides the body, for the tests.
                v["_path"] = path.clone().into();
                if !sig.is_empty() {
                    v["_signature"] = sig.into();
                    v["_timestamp"] = ts.into();
                    v["_raw"] = String::from_utf8_lossy(&body).into_owned().into();
                }
                g.lock().unwrap().push(v);
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (format!("http://{addr}"), got)
}

#[test]
fn every_deployment_start_and_end_reaches_the_webhooks_and_a_secret_url_is_not_logged() {
    let (url, got) = webhook_receiver();
    let secret = std::env::temp_dir().join(format!("cutover-hook-{}", std::process::id()));
    std::fs::write(&secret, format!("{url}/hook/s3cr3t-token\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // A chat hook for rollbacks and failures only, signed.
    let key = std::env::temp_dir().join(format!("cutover-hook-key-{}", std::process::id()));
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // A hook that accepts and never answers: it must delay no other.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_url = format!("http://{}/hang", hang.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hang.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut c = Cluster::start(CoordinatorOptions {
        extra_config: format!(
            "[notify]\nwebhooks = [\"{hang_url}\", \"{url}/plain\", \"{url}/flaky\"]\nwebhook_files = [\"{}\"]\ntimeout = \"3s\"\n\n[[notify.hooks]]\nurl = \"{url}/chat\"\nformat = \"slack\"\nevents = [\"rolled_back\", \"failed\"]\nservices = [\"web\"]\nsecret_file = \"{}\"\n",
            secret.display(),
            key.display()
        ),
        ..Default::default()
    })
    .unwrap();
    for h in ["web-1", "web-2"] {
        c.add_agent(h, "role=web", "").unwrap();
    }
    for h in ["web-1", "web-2"] {
        c.wait_state(h, "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    deploy_ok(&c, "1", &a);
    let (r, code) = deploy(
        &c,
        &spec_file(
            &c,
            "2",
            &["--crash-on-start"],
            "kind = \"rolling\"\nmax_unavailable = 1",
        ),
        "2",
        &a,
        true,
    );
    assert_eq!(code, 3, "{}", r.stdout);
    // Three answering webhooks, two deployments, a start and an end each;
    // and the chat hook's one message. The hook that never answers holds
    // up none of them (alone, its four messages take over a minute of
    // timeouts and retries), and the flaky one got its first message on
    // the second try.
    let all = poll("thirteen notifications", Duration::from_secs(20), || {
        let g = got.lock().unwrap();
        (g.len() >= 13).then(|| g.clone())
    });
    let (flaky, all): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e["_path"] == "/flaky");
    let order: Vec<(String, String)> = flaky
        .iter()
        .map(|e| (e["event"].to_string(), e["deployment"]["id"].to_string()))
        .collect();
    assert_eq!(order.len(), 4, "{flaky:#?}");
    assert_eq!(
        order[0],
        ("\"deployment.started\"".to_string(), "\"d1\"".to_string()),
        "retried, then in order: {order:?}"
    );
    let (chat, events): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e["_path"] == "/chat");
    assert_eq!(chat.len(), 1, "{chat:#?}");
    let text = chat[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("cutover: web 2: deployment d2 rolled back: "),
        "{text}"
    );
    // Signed: HMAC-SHA256 of "TIMESTAMP.BODY" with the key.
    let ts = chat[0]["_timestamp"].as_str().unwrap();
    let body = chat[0]["_raw"].as_str().unwrap();
    let want = {
        use sha2::Digest;
        // HMAC by hand (RFC 2104), as a receiver without a library would.
        let k = b"0123456789abcdef0123456789abcdef";
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, b) in k.iter().enumerate() {
            ipad[i] ^= b;
            opad[i] ^= b;
        }
        let inner = sha2::Sha256::new()
            .chain_update(ipad)
            .chain_update(format!("{ts}.{body}"))
            .finalize();
        let outer = sha2::Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize();
        format!("sha256={}", hex::encode(outer))
    };
    assert_eq!(chat[0]["_signature"].as_str().unwrap(), want);
    let seen = |event: &str, id: &str, phase: &str| {
        events
            .iter()
            .filter(|e| {
                e["event"] == event
                    && e["deployment"]["id"] == id
                    && e["deployment"]["phase"] == phase
            })
            .count()
    };
    assert_eq!(
        seen("deployment.finished", "d1", "succeeded"),
        2,
        "{events:#?}"
    );
    assert_eq!(
        seen("deployment.finished", "d2", "rolled_back"),
        2,
        "{events:#?}"
    );
    let d2 = events
        .iter()
        .find(|e| e["event"] == "deployment.finished" && e["deployment"]["id"] == "d2")
        .unwrap();
    assert_eq!(d2["deployment"]["service"], "web");
    assert!(
        d2["deployment"]["reason"]
            .as_str()
            .unwrap()
            .contains("max_failed"),
        "{d2:#}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "deployment.started")
            .count(),
        4,
        "{events:#?}"
    );
    // The secret URL's token is nowhere in the coordinator's log.
    let log = c.coordinator.as_mut().unwrap().log_text();
    assert!(!log.contains("s3cr3t"), "the webhook's token was logged");
    let _ = std::fs::remove_file(&secret);
    let _ = std::fs::remove_file(&key);
}

#[test]
fn a_deployment_that_needs_approval_waits_for_another_operator() {
    let (c, a) = fleet(2);
    deploy_ok(&c, "1", &a);
    let spec = spec_file(&c, "2", &[], "kind = \"rolling\"\nmax_unavailable = 1");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("[targets]\n"));
    std::fs::write(
        &spec,
        text.replace("[targets]\n", "[targets]\napproval = true\n"),
    )
    .unwrap();
    let (r, code) = deploy(&c, &spec, "2", &a, false);
    assert_eq!(code, 0, "{}", r.stderr);
    poll("d2 to wait for approval", Duration::from_secs(30), || {
        let s = c.cutover(&["status", "d2", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
        v["progress"]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("waiting for approval"))
            .then_some(())
    });
    // Staged everywhere, changed nowhere.
    assert!(
        releases(&c).iter().all(|r| r.starts_with("1-")),
        "{:?}",
        releases(&c)
    );
    // Not by the one who submitted it.
    let r = c.cutover(&["approve", "d2"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("another operator must approve it"),
        "{}",
        r.stderr
    );
    assert!(c.audited("deployment.control", "denied", "another operator"));
    c.issue_operator("bob", "deployer").unwrap();
    let r = c.cutover_as("bob", &["approve", "d2"]);
    assert!(r.ok, "{}", r.stderr);
    let w = c.cutover(&["watch", "d2"]);
    assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    assert!(
        w.stdout.contains("approved by operator:bob"),
        "{}",
        w.stdout
    );
    assert!(
        releases(&c).iter().all(|r| r.starts_with("2-")),
        "{:?}",
        releases(&c)
    );
    // The way back waits for nobody: a rollback to version 2 runs its
    // spec (approval = true) without an approval.
    deploy_ok(&c, "3", &a);
    let r = c.cutover(&["rollback", "web", "--watch"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("waiting for approval"), "{}", r.stdout);
    assert!(
        releases(&c).iter().all(|r| r.starts_with("2-")),
        "{:?}",
        releases(&c)
    );
}

#[test]
fn outside_its_deploy_windows_a_deploy_is_refused_unless_a_reason_is_given_and_rollbacks_never_wait()
 {
    let (c, a) = fleet(2);
    deploy_ok(&c, "1", &a);
    // A window that is closed now: one minute, the day after tomorrow.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let weekday = ((now / 86_400 + 3).rem_euclid(7)) as usize;
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(weekday + 2) % 7];
    let spec = spec_file(&c, "2", &[], "kind = \"rolling\"\nmax_unavailable = 1");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "[targets]\n",
            &format!("[targets]\nwindows = [\"{day} 00:00-00:01\"]\n"),
        ),
    )
    .unwrap();
    let (r, code) = deploy(&c, &spec, "2", &a, true);
    assert_ne!(code, 0);
    assert!(
        r.stderr.contains("outside the deploy windows of `web`")
            && r.stderr.contains("the next opens at"),
        "{}",
        r.stderr
    );
    assert!(releases(&c).iter().all(|r| r.starts_with("1-")));
    // A hotfix, said so: it goes, and the audit log keeps why.
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(cutover_tests::bin("cutover"))
        .args([
            "deploy",
            spec.to_str().unwrap(),
            "--version",
            "2",
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
            "--outside-window",
            "hotfix for INC-42",
            "--watch",
        ])
        .env("HOME", c.dir.path())
        .envs(c.operator_env("admin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.audited(
        "deployment.submit",
        "ok",
        "outside its deploy windows: hotfix for INC-42"
    ));
    // The way back is never held by a window.
    let r = c.cutover(&["rollback", "web", "--watch"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        releases(&c).iter().all(|r| r.starts_with("1-")),
        "{:?}",
        releases(&c)
    );
}

/// `[environments.production]` in coordinator.toml: every deployment to
/// production needs a second operator's approval (its spec does not ask)
/// and none starts during a freeze unless an operator says why; the way
/// back is held by neither.
#[test]
fn an_environments_freeze_and_approval_hold_every_deployment_to_it_but_never_a_rollback() {
    let now = std::time::SystemTime::now();
    let at = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let hour = Duration::from_secs(3600);
    let mut c = Cluster::start(CoordinatorOptions {
        extra_config: format!(
            "[environments.production]\napproval = true\nfreezes = [ {{ from = \"{}\", until = \"{}\", reason = \"year-end freeze\" }} ]\n",
            at(now - hour),
            at(now + hour)
        ),
        ..CoordinatorOptions::default()
    })
    .unwrap();
    for i in 1..=2 {
        c.add_agent(&format!("web-{i}"), "role=web,environment=production", "")
            .unwrap();
    }
    for i in 1..=2 {
        c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(20));
    }
    let a = demo_tarball(c.dir.path(), "demo.tar");
    c.issue_operator("bob", "deployer").unwrap();
    let in_production = |version: &str| {
        let spec = spec_file(&c, version, &[], "kind = \"rolling\"\nmax_unavailable = 1");
        let text = std::fs::read_to_string(&spec).unwrap();
        std::fs::write(
            &spec,
            text.replace("[targets]\n", "[targets]\nenvironment = \"production\"\n"),
        )
        .unwrap();
        spec
    };
    // Refused in the freeze, saying until when and why.
    let (r, code) = deploy(&c, &in_production("1"), "1", &a, false);
    assert_ne!(code, 0);
    assert!(
        r.stderr
            .contains("environment `production` is frozen until")
            && r.stderr.contains("year-end freeze"),
        "{}",
        r.stderr
    );
    // A spec naming no environment cannot go around the rules.
    let (r, code) = deploy(
        &c,
        &spec_file(&c, "1", &[], "kind = \"rolling\"\nmax_unavailable = 1"),
        "1",
        &a,
        false,
    );
    assert_ne!(code, 0);
    assert!(
        r.stderr
            .contains("names no environment but reaches hosts of one with rules")
            && r.stderr.contains("web-1 (production)"),
        "{}",
        r.stderr
    );
    // Said why: it starts, and waits for another operator (the
    // environment asks, the spec does not).
    let go = |version: &str, id: &str| {
        let r = c.cutover(&[
            "deploy",
            in_production(version).to_str().unwrap(),
            "--version",
            version,
            "--artifact",
            &a.url,
            "--sha256",
            &a.sha256,
            "--outside-window",
            "INC-7 fix",
        ]);
        assert!(r.ok, "{}", r.stderr);
        poll(
            &format!("{id} to wait for approval"),
            Duration::from_secs(30),
            || {
                let s = c.cutover(&["status", id, "-o", "json"]);
                let v: serde_json::Value = serde_json::from_str(&s.stdout).ok()?;
                v["progress"]["waiting_for"]
                    .as_str()
                    .is_some_and(|w| w.contains("waiting for approval"))
                    .then_some(())
            },
        );
        assert!(c.cutover_as("bob", &["approve", id]).ok);
        let w = c.cutover(&["watch", id]);
        assert!(w.ok, "{}\n{}", w.stdout, w.stderr);
    };
    go("1", "d1");
    go("2", "d2");
    assert!(releases(&c).iter().all(|r| r.starts_with("2-")));
    // The way back: in the freeze, without an approval.
    let r = c.cutover(&["rollback", "web", "--environment", "production", "--watch"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        releases(&c).iter().all(|r| r.starts_with("1-")),
        "{:?}",
        releases(&c)
    );
}
