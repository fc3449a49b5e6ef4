//! High availability: three coordinators on one PostgreSQL store (a
//! throwaway cluster from Debian's `postgresql`), real agents knowing all
//! three. The leader is killed (-9) at seeded random points of rolling
//! rollouts, or stopped (SIGSTOP) and continued: a standby takes over and
//! finishes each rollout from the store, no host starts a release twice,
//! and the deposed leader steps down.
//!
//! The ten kills run with each host in its own network namespace (198.18.x
//! addresses on a bridge with no route out) and clients on every host,
//! where namespaces are allowed, else on loopback (the test prints which);
//! the other tests run the agents on this machine's loopback, the
//! coordinators on 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cutover_tests::ha::Ha;
use cutover_tests::release::{Artifact, demo_tarball};
use cutover_tests::{CoordinatorOptions, poll};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TERMINAL: &[&str] = &["succeeded", "rolled_back", "aborted", "failed"];

fn spec(ha: &Ha, version: &str, strategy: &str) -> PathBuf {
    spec_at(ha, version, strategy, "127.0.0.1:0")
}

/// [`spec`] with the service listening on `listen`.
fn spec_at(ha: &Ha, version: &str, strategy: &str, listen: &str) -> PathBuf {
    let text = format!(
        r#"service = "web"

[run]
command = ["bin/demo-service", "--app-version", "{version}", "--ready-delay-ms", "300"]

[[listen]]
name = "http"
address = "{listen}"

[swap]
min_ready = "300ms"
grace = "5s"
ready_timeout = "3s"

[strategy]
{strategy}
healthy_deadline = "30s"

[targets]
selector = "role=web"
"#
    );
    let p = ha.c.dir.path().join(format!("web-{version}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Submits `version`; the deployment's id.
fn submit(ha: &Ha, version: &str, a: &Artifact, strategy: &str) -> String {
    ha.submit(&spec(ha, version, strategy), version, a)
}

/// Waits for deployment `id` to end; its phase.
fn ended(ha: &mut Ha, id: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        ha.restart_stepped_down();
        let r = ha.c.cutover(&["status", id, "-o", "json"]);
        if r.ok
            && let Ok(v) = serde_json::from_str::<Value>(&r.stdout)
            && let Some(p) = v["phase"].as_str()
            && TERMINAL.contains(&p)
        {
            return p.to_string();
        }
        assert!(
            start.elapsed() < timeout,
            "{id} did not end within {timeout:?}: {}\n{}\n{}",
            r.stdout,
            r.stderr,
            ha.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each host's active release, as the fleet reports it.
fn releases(ha: &Ha) -> Vec<(String, String)> {
    ha.c.releases()
}

fn fleet() -> Option<(Ha, Artifact)> {
    let mut ha = Ha::start(
        3,
        // The default: a loaded 2-core test machine can starve a leader
        // past a shorter one (it then steps down, safely, but the tests
        // count kills).
        "3s",
        CoordinatorOptions {
            host_timeout: "3s",
            heartbeat_interval: "500ms",
            ..CoordinatorOptions::default()
        },
    )?;
    println!("mode: loopback (agents and coordinators on 127.0.0.1)");
    let extra = ha.agent_config();
    for i in 1..=3 {
        ha.c.add_agent_with(&format!("web-{i}"), "role=web", "", None, &extra)
            .unwrap();
    }
    for i in 1..=3 {
        ha.c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(30));
    }
    let a = demo_tarball(ha.c.dir.path(), "demo.tar");
    Some((ha, a))
}

/// Three hosts each in its own network namespace, their services on
/// 0.0.0.0:8080 (the host's address), the coordinators on the bridge; or
/// `fleet()` on loopback where namespaces are not allowed. Says which.
/// (Fields drop in order: the fleet before its namespaces.)
struct NsFleet {
    ha: Ha,
    a: Artifact,
    /// Each host's service address, in namespace mode.
    services: Vec<std::net::SocketAddr>,
    listen: &'static str,
    _net: Option<cutover_tests::netns::NetFleet>,
}

fn fleet_in_namespaces() -> Option<NsFleet> {
    let net = match cutover_tests::netns::NetFleet::create(3) {
        Ok(n) => n,
        Err(e) => {
            println!("mode: loopback: network namespaces are unavailable here ({e})");
            let (ha, a) = fleet()?;
            return Some(NsFleet {
                ha,
                a,
                services: Vec::new(),
                listen: "127.0.0.1:0",
                _net: None,
            });
        }
    };
    println!(
        "mode: network namespaces, hosts on 198.18.{}.0/24, coordinators on {}",
        net.subnet,
        net.gateway()
    );
    let mut ha = Ha::start(
        3,
        "3s",
        CoordinatorOptions {
            listen_ip: Some(net.gateway()),
            host_timeout: "3s",
            heartbeat_interval: "500ms",
            ..CoordinatorOptions::default()
        },
    )?;
    let extra = ha.agent_config();
    for (i, h) in net.hosts.iter().enumerate() {
        let cfg = format!("{extra}readiness_listen = \"{}:9911\"\n", h.ip);
        ha.c.add_agent_with(
            &format!("web-{}", i + 1),
            "role=web",
            "",
            Some(&h.netns),
            &cfg,
        )
        .unwrap();
    }
    for i in 1..=3 {
        ha.c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(30));
    }
    let a = demo_tarball(ha.c.dir.path(), "demo.tar");
    let services = net
        .hosts
        .iter()
        .map(|h| format!("{}:8080", h.ip).parse().unwrap())
        .collect();
    Some(NsFleet {
        ha,
        a,
        services,
        listen: "0.0.0.0:8080",
        _net: Some(net),
    })
}

/// The leader killed at ten seeded random points of rolling rollouts,
/// the hosts in their own network namespaces with clients on each: every
/// rollout ends, every host runs what its outcome implies, no host starts
/// a release twice, and no client request fails.
#[test]
fn the_leader_killed_at_ten_random_points_of_rolling_rollouts_loses_nothing_and_no_host_starts_a_release_twice()
 {
    let Some(NsFleet {
        mut ha,
        a,
        services,
        listen,
        _net,
    }) = fleet_in_namespaces()
    else {
        return;
    };
    let submit = |ha: &Ha, version: &str, a: &Artifact, strategy: &str| {
        ha.submit(&spec_at(ha, version, strategy, listen), version, a)
    };
    // Three members, one leader, all up.
    let m = ha.members().unwrap();
    assert_eq!(m["store"], "postgres", "{m}");
    let members = m["coordinators"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{m}");
    assert_eq!(
        members.iter().filter(|c| c["leader"] == true).count(),
        1,
        "{m}"
    );
    assert!(members.iter().all(|c| c["up"] == true), "{m}");

    let first = submit(&ha, "1", &a, "kind = \"rolling\"\nmax_unavailable = 3");
    assert_eq!(ended(&mut ha, &first, Duration::from_secs(60)), "succeeded");
    // Clients on every host, through every kill (namespace mode): paced
    // at 200 requests a second each (a closed loop took both cores and
    // starved the coordinators' lease renewals).
    let loads: Vec<cutover_tests::load::Load> = services
        .iter()
        .map(|a| cutover_tests::load::Load::start_paced(*a, 1, 1, Some(200)))
        .collect();
    poll("load on every host", Duration::from_secs(20), || {
        loads.iter().all(|l| l.count() > 20).then_some(())
    });

    let seed: u64 = std::env::var("CUTOVER_HA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(27);
    println!("seed {seed} (CUTOVER_HA_SEED)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live = "1".to_string();
    let mut failovers = Vec::new();
    let mut mid_rollout = 0;
    for round in 0..10 {
        let version = (round + 2).to_string();
        ha.wait_agents();
        let before = ha.leader(Duration::from_secs(30));
        let id = submit(&ha, &version, &a, "kind = \"rolling\"\nmax_unavailable = 1");
        // A random point of the rollout (three batches of about a second
        // each): staging, a swap, between batches, or its end.
        let wait = Duration::from_millis(rng.random_range(0..3_500));
        std::thread::sleep(wait);
        let at_kill = ha.c.cutover(&["status", &id, "-o", "json"]);
        let at_kill = serde_json::from_str::<Value>(&at_kill.stdout)
            .ok()
            .and_then(|v| v["phase"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !TERMINAL.contains(&at_kill.as_str()) {
            mid_rollout += 1;
        }
        let killed_at = Instant::now();
        ha.coords[before.index].proc.as_mut().unwrap().kill();
        let after = ha.leader(Duration::from_secs(30));
        failovers.push(killed_at.elapsed());
        // A new term (the killed one may be back already if it had
        // stepped down and been restarted before the kill).
        assert!(after.term > before.term, "{before:?} then {after:?}");
        println!(
            "round {round}: killed {} after {wait:?} ({id} {at_kill}); {} leads term {} ({:?} later)",
            ha.coords[before.index].name,
            ha.coords[after.index].name,
            after.term,
            killed_at.elapsed()
        );
        // Back as a standby.
        ha.start_if_stopped(before.index);
        let phase = ended(&mut ha, &id, Duration::from_secs(90));
        // Every host runs what the outcome implies.
        let expect = match phase.as_str() {
            "succeeded" => version.clone(),
            "rolled_back" => live.clone(),
            other => panic!("{id} ended {other}:\n{}", ha.logs()),
        };
        poll(
            &format!("every host on {expect} after {id} {phase}"),
            Duration::from_secs(20),
            || {
                releases(&ha)
                    .iter()
                    .all(|(_, r)| r.starts_with(&format!("{expect}-")))
                    .then_some(())
            },
        );
        println!("round {round}: {id} {phase}");
        live = expect;
    }
    assert!(
        mid_rollout >= 5,
        "only {mid_rollout} of 10 kills hit a running rollout: the points are not mid-rollout"
    );
    // No host started any release more than once (a rollback starts the
    // previous one again: counted per release, once each way at most).
    for i in 1..=3 {
        let host = format!("web-{i}");
        let log = ha.c.agent(&host).proc.as_ref().unwrap().log_text();
        for v in 2..=11 {
            let starts = log
                .lines()
                .filter(|l| {
                    l.contains(&format!("started {v}-")) && l.contains("waiting until healthy")
                })
                .count();
            assert!(starts <= 1, "{host} started {v} {starts} times:\n{log}");
        }
    }
    failovers.sort();
    println!(
        "leader found again after a kill: median {:?}, worst {:?}",
        failovers[5], failovers[9]
    );
    for (i, l) in loads.into_iter().enumerate() {
        let c = cutover_tests::load::counts(&l.stop());
        println!("web-{}: {c:?}", i + 1);
        assert!(c.ok > 100, "web-{}: {c:?}", i + 1);
        assert_eq!(c.failed(), 0, "web-{}: {c:?}", i + 1);
    }
}

#[test]
fn a_leader_paused_mid_rollout_is_replaced_steps_down_when_continued_and_the_rollout_finishes() {
    let Some((mut ha, a)) = fleet() else {
        return;
    };
    let first = submit(&ha, "1", &a, "kind = \"rolling\"\nmax_unavailable = 3");
    assert_eq!(ended(&mut ha, &first, Duration::from_secs(60)), "succeeded");
    ha.wait_agents();
    let before = ha.leader(Duration::from_secs(30));
    let id = submit(&ha, "2", &a, "kind = \"rolling\"\nmax_unavailable = 1");
    poll("the rollout to start", Duration::from_secs(20), || {
        let r = ha.c.cutover(&["status", &id, "-o", "json"]);
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        (v["progress"]["batch"].as_u64() >= Some(1)).then_some(())
    });
    // Paused: it cannot renew; a standby takes the lease.
    ha.signal(before.index, "STOP");
    let after = ha.leader(Duration::from_secs(30));
    assert_ne!(after.index, before.index);
    assert!(after.term > before.term);
    // Continued: it finds its lease run out and steps down (exits 75 for
    // its service manager to start it again as a standby).
    ha.signal(before.index, "CONT");
    let deposed = ha.coords[before.index].proc.as_mut().unwrap();
    let code = poll(
        "the deposed leader to exit",
        Duration::from_secs(10),
        || (!deposed.is_running()).then(|| deposed.exit_code()),
    );
    let log = deposed.log_text();
    assert_eq!(code, Some(75), "{log}");
    assert!(log.contains("stepping down"), "{log}");
    assert_eq!(
        ended(&mut ha, &id, Duration::from_secs(90)),
        "succeeded",
        "{}",
        ha.logs()
    );
    poll("every host on 2", Duration::from_secs(20), || {
        releases(&ha)
            .iter()
            .all(|(_, r)| r.starts_with("2-"))
            .then_some(())
    });
    for i in 1..=3 {
        let host = format!("web-{i}");
        let log = ha.c.agent(&host).proc.as_ref().unwrap().log_text();
        let starts = log
            .lines()
            .filter(|l| l.contains("started 2-") && l.contains("waiting until healthy"))
            .count();
        assert_eq!(starts, 1, "{host} started 2 {starts} times:\n{log}");
        // Nothing of the old term was obeyed after the new one was seen:
        // any late command of it was refused by name.
        assert!(
            !log.contains("older than term")
                || log.contains(&format!("older than term {}", after.term)),
            "{log}"
        );
    }
    // The deposed one comes back as a standby (restarted as systemd
    // would, once it has exited 75; here at the latest).
    ha.restart_stepped_down();
    assert!(ha.coords[before.index].proc.as_mut().unwrap().is_running());
    let m = ha.members().unwrap();
    let members = m["coordinators"].as_array().unwrap();
    assert_eq!(
        members.iter().filter(|c| c["leader"] == true).count(),
        1,
        "{m}"
    );
    assert_eq!(m["term"].as_u64(), Some(after.term), "{m}");
}

#[test]
fn a_standby_refuses_operators_and_agents_naming_the_leader() {
    let Some((mut ha, _a)) = fleet() else {
        return;
    };
    let leader = ha.leader(Duration::from_secs(30));
    let standby = (leader.index + 1) % 3;
    // Asked directly (one URL: the standby's), the CLI follows to the
    // leader.
    let mut env = ha.c.operator_env("admin");
    for (k, v) in &mut env {
        if k == "CUTOVER_COORDINATOR" {
            *v = ha.coords[standby].url();
        }
    }
    let out = std::process::Command::new(cutover_tests::bin("cutover"))
        .args(["coordinators", "-o", "json"])
        .env("HOME", ha.c.dir.path())
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["term"].as_u64(), Some(leader.term));
    // An agent given only the standby's URL is told where the leader is,
    // and holds its session there.
    let only_standby = format!("coordinators = [{:?}]\n", ha.coords[standby].url());
    ha.c.add_agent_with("web-4", "role=web", "", None, &only_standby)
        .unwrap();
    ha.c.wait_state("web-4", "ready", Duration::from_secs(30));
    let log = ha.c.agent("web-4").proc.as_ref().unwrap().log_text();
    assert!(
        log.contains("this coordinator is a standby: the leader is"),
        "{log}"
    );
    let hosts = ha.c.hosts();
    assert_eq!(hosts.len(), 4);
    assert!(hosts.iter().all(|h| h["state"] == "ready"), "{hosts:?}");
    // The standby's own log says it stands by.
    let log = ha.coords[standby].proc.as_ref().unwrap().log_text();
    assert!(log.contains("standing by"), "{log}");
    // Every coordinator serves /metrics: the leader everything with
    // cutover_leader 1, each standby cutover_leader 0 and the term of
    // the leader it sees (so `up` and the no-leader alert mean something).
    let mut leading = 0.0;
    for (i, co) in ha.coords.iter().enumerate() {
        let addr = std::fs::read_to_string(co.state_dir.join("metrics.addr")).unwrap();
        let (code, body) = cutover_tests::http_get(addr.trim(), "/metrics").expect("metrics");
        assert_eq!(code, 200, "{}: {body}", co.name);
        let samples: std::collections::BTreeMap<String, f64> = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        let is_leader = i == leader.index;
        assert_eq!(
            samples["cutover_leader"],
            if is_leader { 1.0 } else { 0.0 },
            "{}: {body}",
            co.name
        );
        assert_eq!(
            samples["cutover_leader_term"], leader.term as f64,
            "{}: {body}",
            co.name
        );
        assert!(body.contains("cutover_build_info{version=\""), "{body}");
        assert_eq!(
            samples.contains_key("cutover_agent_sessions"),
            is_leader,
            "{body}"
        );
        leading += samples["cutover_leader"];
    }
    assert_eq!(leading, 1.0);
}

/// A canary waiting for its promote and a blue/green switch in progress,
/// the leader killed at each: the new leader holds the wait (the promote
/// reaches it through any coordinator) and runs the switch again; both
/// end succeeded, with the traffic on the new group.
#[test]
fn the_leader_killed_while_a_canary_waits_and_while_a_blue_green_switch_runs() {
    let Some(mut ha) = Ha::start(3, "3s", CoordinatorOptions::default()) else {
        return;
    };
    let extra = ha.agent_config();
    for (i, color) in [(1, "blue"), (2, "blue"), (3, "green"), (4, "green")] {
        ha.c.add_agent_with(
            &format!("web-{i}"),
            &format!("role=web,color={color}"),
            "",
            None,
            &extra,
        )
        .unwrap();
    }
    for i in 1..=4 {
        ha.c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(30));
    }
    let a = demo_tarball(ha.c.dir.path(), "demo.tar");
    let first = submit(&ha, "1", &a, "kind = \"rolling\"\nmax_unavailable = 4");
    assert_eq!(ended(&mut ha, &first, Duration::from_secs(60)), "succeeded");

    // Canary: one host, then a manual promote.
    let leader = ha.leader(Duration::from_secs(30));
    let id = submit(
        &ha,
        "2",
        &a,
        "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"manual\" }, { hosts = \"100%\" } ]",
    );
    poll(
        "the canary to wait for promote",
        Duration::from_secs(30),
        || {
            let r = ha.c.cutover(&["status", &id, "-o", "json"]);
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            (v["phase"] == "waiting").then_some(())
        },
    );
    ha.coords[leader.index].proc.as_mut().unwrap().kill();
    let next = ha.leader(Duration::from_secs(30));
    assert!(next.term > leader.term);
    // Still waiting under the new leader: nothing promoted it.
    let r = ha.c.cutover(&["status", &id, "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["phase"], "waiting", "{v}");
    let r = ha.c.cutover(&["promote", &id]);
    assert!(r.ok, "{}\n{}", r.stderr, ha.logs());
    assert_eq!(ended(&mut ha, &id, Duration::from_secs(90)), "succeeded");
    ha.start_if_stopped(leader.index);
    ha.wait_agents();

    // Blue/green: the switch command takes 2 s; the leader dies in it.
    let dir = ha.c.dir.path().to_path_buf();
    let (live, began) = (dir.join("live-group"), dir.join("switch-began"));
    let script = dir.join("switch.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CUTOVER_LIVE_GROUP\" >> {}\nsleep 2\necho \"$CUTOVER_LIVE_GROUP\" > {}\n",
            began.display(),
            live.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bg = format!(
        "kind = \"blue_green\"\nswitch = {{ command = [\"{}\"] }}",
        script.display()
    );
    let id = submit(&ha, "3", &a, &bg);
    assert_eq!(ended(&mut ha, &id, Duration::from_secs(90)), "succeeded");
    let group = || std::fs::read_to_string(&live).unwrap().trim().to_string();
    let first_group = group();
    let _ = std::fs::remove_file(&began);
    ha.wait_agents();
    let leader = ha.leader(Duration::from_secs(30));
    let id = submit(&ha, "4", &a, &bg);
    poll("the switch to begin", Duration::from_secs(60), || {
        began.exists().then_some(())
    });
    ha.coords[leader.index].proc.as_mut().unwrap().kill();
    let next = ha.leader(Duration::from_secs(30));
    assert!(next.term > leader.term);
    assert_eq!(
        ended(&mut ha, &id, Duration::from_secs(90)),
        "succeeded",
        "{}",
        ha.logs()
    );
    // The new group serves: the switch was run again by the new leader.
    assert_ne!(group(), first_group);
    let runs = std::fs::read_to_string(&began).unwrap();
    assert!(runs.lines().count() >= 1, "{runs}");
    // No host started a release twice.
    for i in 1..=4 {
        let host = format!("web-{i}");
        let log = ha.c.agent(&host).proc.as_ref().unwrap().log_text();
        for v in 2..=4 {
            let starts = log
                .lines()
                .filter(|l| {
                    l.contains(&format!("started {v}-")) && l.contains("waiting until healthy")
                })
                .count();
            assert!(starts <= 1, "{host} started {v} {starts} times:\n{log}");
        }
    }
}

/// A store restored from an older backup has an older leader term than
/// the fleet has seen (agents would refuse every command): the leader that
/// hears of a newer term from a host moves the term past it and steps
/// down, and the next leader's deployment is obeyed.
#[test]
fn a_store_behind_the_fleets_leader_term_moves_past_it_and_deploys_again() {
    let Some((mut ha, a)) = fleet() else {
        return;
    };
    // Three failovers: the agents have seen term 4.
    for _ in 0..3 {
        let l = ha.leader(Duration::from_secs(30));
        ha.coords[l.index].proc.as_mut().unwrap().kill();
        let next = ha.leader(Duration::from_secs(30));
        assert!(next.term > l.term);
        ha.start_if_stopped(l.index);
    }
    let seen = ha.leader(Duration::from_secs(30)).term;
    assert!(seen >= 4, "{seen}");
    for i in 1..=3 {
        ha.c.wait_state(&format!("web-{i}"), "ready", Duration::from_secs(30));
    }
    // The "restore": every coordinator stopped, the lease back at term 1.
    for i in 0..3 {
        if let Some(p) = ha.coords[i].proc.as_mut() {
            p.kill();
        }
    }
    ha.pg.sql(
        "cutover",
        "UPDATE cutover_leader SET term = 1, expires_at = now()",
    );
    for i in 0..3 {
        ha.start_coordinator(i).unwrap();
    }
    // The first leader of term 2 hears term >= 4 from the agents, moves
    // the term past it and steps down (exit 75); a later leader is ahead.
    let ahead = poll(
        "a leader ahead of the fleet",
        Duration::from_secs(60),
        || {
            for i in 0..3 {
                let p = ha.coords[i].proc.as_mut().unwrap();
                if !p.is_running() {
                    assert_eq!(p.exit_code(), Some(75), "{}", p.log_text());
                    assert!(
                        p.log_text().contains("newer than this one"),
                        "{}",
                        p.log_text()
                    );
                    ha.start_coordinator(i).unwrap();
                }
            }
            let r = ha.c.cutover(&["coordinators", "-o", "json"]);
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            let t = v["term"].as_u64()?;
            (t > seen).then_some(t)
        },
    );
    println!("term {ahead} after the fleet's {seen}");
    ha.wait_agents();
    let id = submit(&ha, "5", &a, "kind = \"rolling\"\nmax_unavailable = 3");
    assert_eq!(
        ended(&mut ha, &id, Duration::from_secs(60)),
        "succeeded",
        "{}",
        ha.logs()
    );
}
